"""The researchers' answers: the study's measures computed from an export folder (or the live database).

    load.py      an export folder (JSONL, CSV or Parquet; any contract version) -> ``Export`` (pandas frames)
    measures.py  ``analyze(export) -> Analysis``: sections of figures, tables and chart data, each stating the
                 items and participants it rests on, or ``NotAvailable`` naming the column it needs
    questions.py the study's questions (``question_answers``): per-question summaries, and answers as measures
    conditions.py the study's conditions compared on a measure: mixed model per participant-week, or a fallback
    report.py    an ``Analysis`` as one HTML file (charts embedded) or Markdown, with every table as CSV beside it

Statistics come from scipy and statsmodels, tables from pandas; charts from matplotlib. It stands beside the
collection server (it reads the export contract of studyapp.server.export) and needs the ``analysis`` extra.
"""
