"""The Kubernetes edge: manifest builders (pure dicts) and, later, the calls that apply them."""
