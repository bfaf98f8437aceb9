"""One renderer per experiment: its summary text, figures and extra files, from typed rows."""
