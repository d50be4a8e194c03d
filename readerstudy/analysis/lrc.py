"""Reader for the .lrc multireader ROC rating format (Metz's LABMRMC, read by the Iowa OR-DBM MRMC software).

Layout: a title line; per reader a reader-id line (the first reader's is followed by a line of modality names
and a line of L/S flags per modality: L = a larger rating is more suspicious, S = a smaller one); then one row
per normal case ``rating_mod0 … rating_modT case_id``, a ``*``, one row per abnormal case, a ``*``; the file
ends with ``#``. Every reader must rate the same cases in the same order.
"""

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class LrcData:
    """ratings[reader, modality, case] (S modalities negated, so larger is always more suspicious),
    truth[case] (True = abnormal), and the ids read from the file."""

    title: str
    readers: list[str]
    modalities: list[str]
    cases: list[str]
    ratings: np.ndarray
    truth: np.ndarray


def _fields(line: str) -> list[str]:
    return [f.strip('"') for f in line.split()]


def parse_lrc(text: str) -> LrcData:
    """Parse .lrc text; ValueError naming the line for anything out of place."""
    lines = [(k + 1, line.strip()) for k, line in enumerate(text.splitlines()) if line.strip()]
    if len(lines) < 4:
        raise ValueError(".lrc: too short for a title, a reader and the modality lines")
    title = lines[0][1]
    modalities = _fields(lines[2][1])
    directions = _fields(lines[3][1])
    if len(directions) != len(modalities) or not set(directions) <= {"L", "S"}:
        raise ValueError(f".lrc line {lines[3][0]}: need one L or S per modality {modalities}, got {directions}")
    readers, blocks, cases = [], [], None
    pos = 1
    while lines[pos][1] != "#":
        readers.append(lines[pos][1].strip('"'))
        pos += 3 if len(readers) == 1 else 1
        rows: list[list[str]] = [[], []]
        for block in rows:
            while pos < len(lines) and lines[pos][1] != "*":
                number, line = lines[pos]
                values = line.split()
                if len(values) != len(modalities) + 1:
                    raise ValueError(f".lrc line {number}: expected {len(modalities)} ratings and a case id")
                block.append(values)
                pos += 1
            if pos == len(lines):
                raise ValueError(f".lrc: reader {readers[-1]}: a block does not end with '*'")
            pos += 1
        if pos == len(lines):
            raise ValueError(".lrc: the file does not end with '#'")
        ids = [r[-1] for r in rows[0] + rows[1]]
        if cases is None:
            cases, n_normal = ids, len(rows[0])
        elif ids != cases or len(rows[0]) != n_normal:
            raise ValueError(f".lrc: reader {readers[-1]} does not rate the same cases as reader {readers[0]}")
        try:
            blocks.append(np.array([r[:-1] for r in rows[0] + rows[1]], dtype=float).T)
        except ValueError as err:
            raise ValueError(f".lrc: reader {readers[-1]}: non-numeric rating ({err})") from None
    ratings = np.stack(blocks) * np.where(np.array(directions) == "S", -1.0, 1.0)[None, :, None]
    truth = np.arange(len(cases)) >= n_normal
    return LrcData(title, readers, modalities, cases, ratings, truth)
