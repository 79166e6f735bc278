"""Run an HPOExperiment on this machine: trials are local processes, state is a folder."""
