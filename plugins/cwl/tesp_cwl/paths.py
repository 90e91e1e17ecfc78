"""Where a CWL job lives inside its TES task.

cwltool is told to treat every tool as a container job whose output directory, temporary
directory and input staging area are these TES paths, so the command line it builds (and
``$(runtime.outdir)``, ``$(inputs.x.path)``...) already speaks TES paths. The host side of
each job (cwltool's ``job.outdir``) is reached through ``file://`` URLs.
"""

from __future__ import annotations

OUTDIR = "/cwl/outdir"
TMPDIR = "/cwl/tmp"
STAGEDIR = "/cwl/inputs"

# Written by the task's second executor: the empty directories of the output directory,
# which a file-by-file upload would otherwise lose.
EMPTY_DIRS_MANIFEST = ".tesp-cwl-empty-dirs"

# Used when a tool names no image (under bwrap/none runtimes the image is not used at all).
DEFAULT_IMAGE = "ubuntu:24.04"

# Schemes the TES worker fetches itself; such locations are passed through untouched.
REMOTE_SCHEMES = frozenset({"http", "https", "ftp", "s3"})
