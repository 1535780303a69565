"""Analysis reports (分析研判报告): weekly, monthly and quarterly, and the special analysis of one incident.

``periods`` says which days a report covers, ``data`` loads them (the city's
tables through the pipeline's own scoring and linking, and the warnings
database), ``analysis`` turns them into tables with pure functions,
``incident`` does the same for one escalation, ``render`` writes HTML, PDF,
JSON and a manifest, and ``run`` strings the steps together for the command
and the Prefect flow (docs/reports.md).
"""
