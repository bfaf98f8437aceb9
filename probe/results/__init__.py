"""The last stage: result rows and tables, provenance, run directories and plots."""
