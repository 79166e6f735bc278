"""The pure core: dicts in, values out. No kopf, no kubernetes, no subprocess, no clock."""
