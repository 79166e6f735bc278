"""The Kubernetes edge: manifest builders (pure dicts), reading trials back from Jobs and pods
(pure), and the only module that calls the API server (`api`)."""
