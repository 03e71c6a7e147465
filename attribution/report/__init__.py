"""The weekly finance report: build one `WeeklyReport` from the warehouse, render it four ways, deliver it.

`build.build_weekly_report` reads the warehouse (money only through `allocate`); `tables` arranges the
report into the sections every renderer shares; `html_render`, `pdf_render`, `csv_render` and
`xlsx_render` turn those sections into files; `deliver` writes them locally, to S3, or mails them.
"""
