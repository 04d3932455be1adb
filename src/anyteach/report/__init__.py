"""Reports: what a finished study says, in tables, figures and words.

`aggregate` turns the store's runs into the paper's numbers (and pairs each run with its no-teacher
control); `findings` says what they show, one claim at a time; `figures` draws them;
`teacher_choice` checks and re-fits the teacher forecast on a study; `crosscheck` checks the demo's
conclusions on another zoo; `document` writes `report.md` and `report.html`.

May import: every folder but `cli`.
"""

from .document import PAPER_RESULTS, PaperResult, ReportFiles, bucket_table, headline_table, headline_text, write_report

__all__ = [
    "PAPER_RESULTS",
    "PaperResult",
    "ReportFiles",
    "bucket_table",
    "headline_table",
    "headline_text",
    "write_report",
]
