"""One script per figure of STUDIES.md; `python -m studies` regenerates them all into figures/."""
