"""What the program keeps on disk: checkpoints (their contents and every check of them),
a run's record in its output folder, and index files."""
