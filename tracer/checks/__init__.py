"""The checks beside the pipeline: verify (formulas recalculated in a spreadsheet engine), gradcheck
(finite differences), exercise (a student's version of a workbook) and check (grading it)."""
