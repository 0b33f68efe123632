"""The one way in: reading back the files this program and its users hand it."""
import json
from pathlib import Path
from typing import Dict, List


def read_jsonl(path) -> List[Dict]:
    """The JSON objects of a JSON-lines file; unreadable lines (a torn last line, as a crash
    leaves it) are dropped, a missing file has none."""
    rows = []
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError):
        return rows
    for line in lines:
        try:
            row = json.loads(line)
        except ValueError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows
