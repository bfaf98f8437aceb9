"""Stage 1, the data: tasks and their registry, source readers, languages and families."""
