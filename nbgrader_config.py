"""nbgrader configuration for the course: instructor notebooks in solutions/, student notebooks in assignments/.

`dl4nlp release` and `dl4nlp autograde` load this file; student data (gradebook.db,
submitted/, autograded/, feedback/) is git-ignored.
"""

c = get_config()  # noqa: F821 (injected by nbgrader)

c.CourseDirectory.root = "."
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
c.CourseDirectory.db_url = "sqlite:///gradebook.db"
# Copy only the notebooks: nothing else from solutions/ reaches students.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "*.py", "*.md", "*.csv", "*.db"]

# Student stubs keep signature and docstring; the body becomes this.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True

# Generous per-cell limit for a CPU grading machine (training runs in smoke mode while grading).
c.ExecutePreprocessor.timeout = 300
c.Execute.timeout = 300
