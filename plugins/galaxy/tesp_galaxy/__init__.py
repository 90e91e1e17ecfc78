"""A Galaxy job runner that sends Galaxy's jobs to a GA4GH TES server (TESP or any other).

Load it in ``job_conf.yml`` with ``load: tesp_galaxy.runner:TESPJobRunner``. This package
imports neither Galaxy nor TESP; :mod:`tesp_galaxy.runner` needs Galaxy (26.1).
"""
