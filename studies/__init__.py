"""One script per figure of docs/studies.md; `python -m studies` regenerates them all into figures/."""
