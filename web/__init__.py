"""What people read: the Jinja2 templates, inline SVG charts and Chinese labels every page shares.

The daily ranking's published pages (pipelines), the analysis reports (pipelines) and the
workbench (serving) render through this one package, so a level, a status or a chart looks
the same wherever it appears. It imports features/ and models/ only.
"""
