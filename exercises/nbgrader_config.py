"""nbgrader configuration for the course's graded problem sets (run from this directory)."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "bin"))

from grading_ext import GradedExecute  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor  # noqa: E402
from nbgrader.preprocessors import (  # noqa: E402
    AssignLatePenalties,
    CheckCellMetadata,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
)

c = get_config()  # noqa: F821

c.CourseDirectory.course_id = "steplab"
c.CourseDirectory.root = os.path.dirname(os.path.abspath(__file__))
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", ".DS_Store"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Per-cell limit; grade.py may lower it. Every solution cell runs in a few seconds.
c.Execute.timeout = 60
c.CappedExecute.max_cell_output_bytes = 200_000
# Every test cell's points come from the grader's own tests, run outside the learner's kernel.
c.GradedExecute.grader_dir = os.path.join(c.CourseDirectory.root, "grader")
c.GradedExecute.call_timeout = 60.0
c.GradedExecute.notebook_timeout = 900.0
c.LimitOutput.max_lines = 200
c.LimitOutput.max_traceback = 60
c.Autograde.autograde_preprocessors = [
    GradedExecute,
    IgnorePattern,
    LimitOutput,
    SaveAutoGrades,
    AssignLatePenalties,
    CheckCellMetadata,
]
