"""The way in and the way out of every file: atomic writes that follow no link, reading
back, torch files with checksums, and one lock per output folder."""
