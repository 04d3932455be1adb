"""Analysis without training: complementary knowledge of a pair or a zoo, and teachers ranked.

`metrics` holds the pure metric functions (flips, transfer metrics, McNemar and sign tests,
teacher-strength buckets); `complementarity` measures a pair or every ordered pair of a zoo from
cached predictions, `complementarity_figures` draws it; `forecast` ranks a student's candidate
teachers before any training; `ceilings` holds what each student's architecture can hold at all.

May import: `core`, `models`, `data`, `zoo`, `methods`.
"""
