"""Definitions, jobs, schedules, sensors and resources; and the ``gtzan`` command line."""
