"""The arrows of the course, for every assignment: package -> solutions -> assignments -> grades.

- a graded solution cell is the package function's source (with nbgrader's markers);
- re-deriving cells (`dl4nlp sync`) and regenerating assignments/ (`dl4nlp release`) change nothing;
- student stubs keep signature and docstring;
- grading through the real `dl4nlp autograde` command: the instructor notebook gets full marks,
  the untouched student notebook zero, one broken function loses exactly its part's points.
"""

from __future__ import annotations

import ast
import html
import inspect
import json
import re
import shutil
import textwrap
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest

from submissions import autograde, nbgrader, perturbed, read, replaced, solution_index, with_source, write_submission

from dl4nlp import exercises
from dl4nlp.instructor.release import assignments, release
from dl4nlp.instructor.sync import (BEGIN, END, course_markdown, course_notebooks, graded_functions, release_tag,
                                    repository, solution_cell_source, strip_solution_markers, sync_markdown,
                                    sync_notebook)

pytestmark = pytest.mark.instructor  # needs the instructor tools: not run by the Colab check

ROOT = Path(__file__).resolve().parent.parent
ASSIGNMENTS = assignments(ROOT)
SOLUTIONS = sorted(ROOT.glob("solutions/*/*.ipynb"))


def ids(paths: list[Path]) -> list[str]:
    return [p.relative_to(ROOT).as_posix() for p in paths]


def solution_cells(notebook: nbformat.NotebookNode) -> dict[str, nbformat.NotebookNode]:
    return {c.metadata["nbgrader"]["grade_id"]: c for c in notebook.cells
            if c.metadata.get("nbgrader", {}).get("solution")}


def copy_course(destination: Path) -> Path:
    for name in ("_config.yml", "_toc.yml", "nbgrader_config.py", "README.md"):
        shutil.copy(ROOT / name, destination / name)
    for folder in ("solutions", "assignments", "book"):
        shutil.copytree(ROOT / folder, destination / folder, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    return destination


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_assignment_is_released_with_exercises_and_a_test_cell_per_part(assignment):
    """One instructor notebook, its released twin, and for every part of its exercises a solution
    cell and a locked test cell with the part's points; no graded cell without a part."""
    solutions = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))
    assert len(solutions) == 1, f"solutions/{assignment}/ should hold exactly one notebook"
    assert (ROOT / "assignments" / assignment / solutions[0].name).is_file(), f"run `dl4nlp release {assignment}`"
    parts = exercises.load(assignment).points
    notebook = read(solutions[0])
    solution_ids = [nbgrader(c)["grade_id"] for c in notebook.cells
                    if nbgrader(c).get("solution") and c.cell_type == "code"]  # markdown: written answers
    tests = {nbgrader(c)["grade_id"]: nbgrader(c) for c in notebook.cells
             if nbgrader(c).get("grade") and not nbgrader(c).get("solution")}
    assert solution_ids == list(parts), "one solution cell per part, in the order of the exercises"
    assert list(tests) == [f"test_{name}" for name in parts], "one test cell per part, named test_<part>"
    assert all(tests[f"test_{name}"]["points"] == points and tests[f"test_{name}"]["locked"]
               for name, points in parts.items())


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_every_part_states_its_rules_and_points_live_in_one_place(assignment):
    """Right before each solution cell, a rules cell rendered from the exercises (points, forbidden calls,
    typical bugs), in the instructor and the student notebook; no other markdown cell states points."""
    import re

    exercises_ = exercises.load(assignment)
    for folder in ("solutions", "assignments"):
        notebook = read(next((ROOT / folder / assignment).glob("*.ipynb")))
        for part in exercises_.parts:
            index = solution_index(notebook, part.name)
            rules = notebook.cells[index - 1]
            assert f"dl4nlp-rules-{part.name}" in rules.metadata.get("tags", []), f"{folder}: {part.name}"
            assert f"({part.points:g} points)" in rules.source or f"({part.points:g} point)" in rules.source
            assert all(f"`{call}`" in rules.source for call in part.forbidden)
            assert all(bug in rules.source for bug in part.bugs)
        stated = [cell.source for cell in notebook.cells if cell.cell_type == "markdown"
                  and not any(tag.startswith("dl4nlp-rules-") for tag in cell.metadata.get("tags", []))
                  and re.search(r"\d+ points?\b", cell.source)]
        assert not stated, f"{folder}: points are written in the exercises (and rendered by sync), not here: {stated}"


@pytest.mark.parametrize("path", SOLUTIONS, ids=ids(SOLUTIONS))
def test_solution_cells_are_the_package_code(path):
    notebook = nbformat.read(path, as_version=4)
    functions = graded_functions(path, ROOT)
    assert functions, f"{path}: its assignment has no parts in dl4nlp.exercises"
    cells = solution_cells(notebook)
    for name, function in functions.items():
        source = cells[name].source
        assert source == solution_cell_source(function), f"{name}: run `dl4nlp sync`"
        assert strip_solution_markers(source) == textwrap.dedent(inspect.getsource(function)).rstrip("\n")
        assert source.count(BEGIN) == source.count(END) == 1


@pytest.mark.parametrize("path", course_notebooks(ROOT), ids=ids(course_notebooks(ROOT)))
def test_sync_changes_nothing(path, tmp_path):
    course = copy_course(tmp_path)
    assert not sync_notebook(course / path.relative_to(ROOT), course), f"{path}: run `dl4nlp sync`"


@pytest.mark.parametrize("path", course_markdown(ROOT), ids=ids(course_markdown(ROOT)))
def test_markdown_links_are_in_sync(path, tmp_path):
    course = copy_course(tmp_path)
    assert not sync_markdown(course / path.relative_to(ROOT), course), f"{path}: run `dl4nlp sync`"


def test_repository_url_lives_in_one_place(tmp_path):
    """Change the repository in _config.yml, sync: no notebook or page names the old one."""
    course = copy_course(tmp_path)
    old_url, old_branch = repository(course)
    old_tag = release_tag(course)
    config = course / "_config.yml"
    config.write_text(config.read_text().replace(old_url, "https://github.com/someone/fork")
                      .replace(f"branch: {old_branch}", "branch: fall-term")
                      .replace(f"release_tag: {old_tag}", "release_tag: term-2027-spring"))
    for notebook in course_notebooks(course):
        sync_notebook(notebook, course)
    for page in course_markdown(course):
        sync_markdown(page, course)
    derived = [*course_notebooks(course), *course_markdown(course)]
    old_repository = old_url.split("github.com/", 1)[1]
    assert not [p for p in derived if old_repository in p.read_text()]
    texts = "".join(p.read_text() for p in derived)
    assert "colab.research.google.com/github/someone/fork/blob/fall-term/assignments/" in texts  # badges: the branch
    assert "git+https://github.com/someone/fork@term-2027-spring" in texts  # setup cells: the term's tag
    assert "git+https://github.com/someone/fork@fall-term" not in texts and f"@{old_tag}\"" not in texts


@pytest.mark.parametrize("path", [*course_notebooks(ROOT), *ROOT.glob("assignments/*/*.ipynb")],
                         ids=ids([*course_notebooks(ROOT), *ROOT.glob("assignments/*/*.ipynb")]))
def test_notebooks_are_committed_without_outputs(path):
    notebook = nbformat.read(path, as_version=4)
    assert not [c for c in notebook.cells if c.cell_type == "code" and (c.outputs or c.execution_count)], \
        f"{path}: clear the outputs before committing"


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_release_changes_nothing(assignment, tmp_path):
    course = copy_course(tmp_path)
    for notebook in release(course, assignment):
        committed = ROOT / "assignments" / assignment / notebook.name
        assert json.loads(notebook.read_text()) == json.loads(committed.read_text()), \
            f"assignments/{assignment}/{notebook.name} is stale: run `dl4nlp release {assignment}`"


@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_student_stubs_keep_decorators_signature_and_docstring(assignment):
    """A stub keeps its @shapes line (wrong shapes still get the message), its signature and its docstring."""
    for path in (ROOT / "assignments" / assignment).glob("*.ipynb"):
        student = nbformat.read(path, as_version=4)
        functions = graded_functions(ROOT / "solutions" / assignment / path.name, ROOT)
        for name, cell in solution_cells(student).items():
            if name not in functions:
                continue
            stub = ast.parse(cell.source).body[0]
            reference = ast.parse(textwrap.dedent(inspect.getsource(functions[name]))).body[0]
            assert ast.dump(stub.args) == ast.dump(reference.args) and ast.dump(stub.returns) == ast.dump(reference.returns)
            assert ast.get_docstring(stub) == ast.get_docstring(reference)
            assert [ast.dump(d) for d in stub.decorator_list] == [ast.dump(d) for d in reference.decorator_list], name
            assert "raise NotImplementedError()" in cell.source and BEGIN not in cell.source
            body_lines = strip_solution_markers(solution_cell_source(functions[name])).splitlines()
            hidden = body_lines[-3:]  # the end of the answer never reaches students
            assert not all(line in cell.source.splitlines() for line in hidden)
        hidden_tests = [c for c in student.cells if "BEGIN HIDDEN TESTS" in c.source or "END HIDDEN" in c.source]
        assert not hidden_tests


# --- grading round trip -----------------------------------------------------------------


# A one-line library answer per part that the assignment forbids (the rnn notebook's own, and many
# disguises of them, are in the hostile suite of tests/test_grader.py).
ONE_LINERS = {
    "cnn": {
        "conv1d": """\
            def conv1d(x, weight, bias=None, stride=1):
                return F.conv1d(x.transpose(1, 2), weight, bias, stride).transpose(1, 2)
            """,
        "conv1d_windows": """\
            def conv1d_windows(x, weight, bias=None, stride=1):
                layer = nn.Conv1d(x.shape[2], weight.shape[0], weight.shape[2], stride, bias=bias is not None)
                layer.weight = nn.Parameter(weight)
                if bias is not None:
                    layer.bias = nn.Parameter(bias)
                return layer(x.transpose(1, 2)).transpose(1, 2)
            """,
        "max_pool_over_time": """\
            def max_pool_over_time(x, lengths=None):
                if lengths is not None:
                    x = x.masked_fill((torch.arange(x.shape[1]) >= lengths[:, None])[..., None], float("-inf"))
                return F.max_pool1d(x.transpose(1, 2), x.shape[1]).squeeze(-1)
            """,
        "avg_pool_over_time": """\
            def avg_pool_over_time(x, lengths=None):
                return F.adaptive_avg_pool1d(x.transpose(1, 2), 1).squeeze(-1)
            """,
    },
    "attention": {
        "scaled_dot_product_attention": """\
            def scaled_dot_product_attention(q, k, v, attn_mask=None, is_causal=False):
                return F.scaled_dot_product_attention(q, k, v, attn_mask, is_causal=is_causal)
            """,
        "multi_head_attention": """\
            def multi_head_attention(query, key, value, q_proj, k_proj, v_proj, out_proj, num_heads,
                                     attn_mask=None, dropout=None):
                layer = nn.MultiheadAttention(query.shape[-1], num_heads, batch_first=True)
                return layer(query, key, value, attn_mask=None if attn_mask is None else ~attn_mask)
            """,
        "post_norm_block": """\
            def post_norm_block(x, self_attention, feedforward, norm1, norm2, dropout):
                return nn.TransformerEncoderLayer(x.shape[-1], 1, batch_first=True)(x)
            """,
    },
    "reproducibility": {
        "train_run": """\
            def train_run(features, labels, seed, epochs=3, batch_size=8, lr=0.5, dropout=0.2):
                from transformers import set_seed
                set_seed(seed)
                return torch.zeros(epochs), torch.zeros(2, features.shape[1]), torch.zeros(2)
            """,
        "clean_split": """\
            def clean_split(sentences, test_fraction, seed):
                from sklearn.model_selection import train_test_split
                train, test = train_test_split(list(range(len(sentences))), test_size=test_fraction, random_state=seed)
                return torch.tensor(sorted(train)), torch.tensor(sorted(test))
            """,
        "find_leaks": """\
            from dl4nlp.reproducibility import split_overlap

            def find_leaks(train, test):
                shared = set(split_overlap(train, test))
                return tuple(i for i, sentence in enumerate(test) if " ".join(sentence.lower().split()) in shared)
            """,
        "mean_and_std": """\
            def mean_and_std(values):
                return values.mean(), torch.std(values)
            """,
    },
    "bert": {
        "mask_tokens": """\
            def mask_tokens(input_ids, mask_token_id, vocab_size, special_tokens_mask=None, mlm_probability=0.15,
                            generator=None):
                from transformers import DataCollatorForLanguageModeling
                collator = DataCollatorForLanguageModeling(None, mlm_probability=mlm_probability)
                return collator.torch_mask_tokens(input_ids.clone(), special_tokens_mask)
            """,
        "mlm_loss": """\
            def mlm_loss(mlm_logits, labels):
                return F.cross_entropy(mlm_logits.flatten(0, 1), labels.flatten())
            """,
        "bert_layer": """\
            from dl4nlp.transformer import post_norm_block

            def bert_layer(x, attention_mask, attention, feedforward, norm1, norm2, dropout):
                mask = None if attention_mask is None else attention_mask == 0
                return post_norm_block(x, lambda h: attention(h, h, h, mask)[0], feedforward, norm1, norm2, dropout)
            """,
    },
    "finetune": {
        "finetune_step": """\
            from dl4nlp.training import training_step

            def finetune_step(model, batch, optimizer, scheduler, clip=1.0):
                return training_step(model, batch, lambda m, b: m(**b).loss, optimizer, clip=clip, scheduler=scheduler)
            """,
        "classification_metrics": """\
            from sklearn.metrics import accuracy_score, confusion_matrix, f1_score

            def classification_metrics(predictions, labels, num_labels=2, positive=1):
                classes = list(range(num_labels))
                return Metrics(accuracy_score(labels, predictions),
                               f1_score(labels, predictions, average="binary" if num_labels == 2 else "macro",
                                        pos_label=positive, labels=classes, zero_division=0),
                               torch.tensor(confusion_matrix(labels, predictions, labels=classes)))
            """,
        "finetune_classifier": """\
            from dl4nlp.finetune import batch_loss, predict
            from dl4nlp.training import fit

            def finetune_classifier(model, train, validation, epochs=3, lr=5e-5, batch_size=32, warmup_ratio=0.1,
                                    seed=0):
                loader = DataLoader(train, batch_size, shuffle=True, generator=torch.Generator().manual_seed(seed))
                optimizer, scheduler = optimizer_and_schedule(model, lr, epochs * len(loader), warmup_ratio)
                fit(model, loader, batch_loss, epochs=epochs, optimizer=optimizer, scheduler=scheduler, progress=False)
                return classification_metrics(*predict(model, DataLoader(validation, batch_size=256)), model.num_labels)
            """,
    },
    "generation": {
        "decoder_mask": """\
            def decoder_mask(T, past_length=0, *, device=None):
                from dl4nlp.attention import causal_mask
                return torch.cat([torch.ones(T, past_length, dtype=torch.bool), causal_mask(T)], dim=1)
            """,
        "causal_self_attention": """\
            def causal_self_attention(x, c_attn, c_proj, num_heads, past=None, dropout=None):
                q, k, v = (split_heads(t, num_heads) for t in c_attn(x).split(x.shape[-1], dim=-1))
                if past is not None:
                    k, v = torch.cat([past[0], k], dim=2), torch.cat([past[1], v], dim=2)
                mask = decoder_mask(x.shape[1], k.shape[2] - x.shape[1])
                return c_proj(merge_heads(F.scaled_dot_product_attention(q, k, v, attn_mask=mask))), (k, v)
            """,
        "decoder_block": """\
            from dl4nlp.transformer import pre_norm_block

            def decoder_block(x, self_attention, feedforward, norm1, norm2, dropout):
                caches = []
                def attend(h):
                    attended, cache = self_attention(h)
                    caches.append(cache)
                    return attended
                return pre_norm_block(x, attend, feedforward, norm1, norm2, dropout), caches[0]
            """,
        "apply_temperature": """\
            def apply_temperature(logits, temperature):
                from transformers import TemperatureLogitsWarper
                return TemperatureLogitsWarper(temperature)(None, logits)
            """,
        "top_k_filter": """\
            def top_k_filter(logits, k):
                from transformers import TopKLogitsWarper
                return TopKLogitsWarper(top_k=k)(None, logits)
            """,
        "top_p_filter": """\
            import transformers

            def top_p_filter(logits, p):
                return transformers.TopPLogitsWarper(top_p=p)(None, logits)
            """,
    },
    "prompting": {
        "fill_template": """\
            def fill_template(template, x, answer=None):
                from openprompt.prompts import ManualTemplate
                return ManualTemplate(text=template).wrap_one_example({"text_a": x, "tgt_text": answer})
            """,
        "label_word_scores": """\
            import transformers

            def label_word_scores(model, tokenizer, prompts, words):
                scorer = transformers.pipeline("zero-shot-classification", model=model, tokenizer=tokenizer)
                return torch.tensor([scorer(prompt, candidate_labels=list(words))["scores"] for prompt in prompts])
            """,
    },
}


def feedback_parts(page: Path) -> dict[str, tuple[str, str]]:
    """A student's feedback page, part by part: {"rnn_cell": ("0 / 2", "max difference ..."), ...}."""
    rows = re.findall(r"<tr><td><code>(.*?)</code></td><td class=\"\w+\">(.*?)</td><td>(.*?)</td></tr>",
                      page.read_text(), re.S)
    return {html.unescape(name): (points, html.unescape(why)) for name, points, why in rows}


@pytest.mark.slow
@pytest.mark.parametrize("assignment", ASSIGNMENTS)
def test_grading_round_trip(assignment, tmp_path):
    """Through the real command, with two jobs as on an instructor's laptop: the instructor notebook full marks,
    the untouched student notebook 0, each broken part loses exactly its points, each typical bug scores 0 and is
    named to the student; a second run gives the same rows (another process, whose jobs take the submissions in
    another order; it runs beside the first, whose start-up it overlaps).

    Broken parts, typical bugs and one-liners go several to a notebook: every other part broken in two notebooks,
    the n-th bug of every part in the n-th notebook, the one-liners in one. A part is graded with the grader's own
    functions for the parts it calls, so a wrong part costs its own points and no others, which this checks as
    well. Verdicts and bug names are read on the student's feedback page, which holds every part's whole message
    (the CSV's detail stops at 2,000 characters). The second run grades the notebooks whose grading draws the
    most: the instructor's, the first and the last typical bugs' (every part's first bug; every bug of the parts
    with the most, which diagnosing runs through) and the one-liners'."""
    submissions = tmp_path / "submissions"
    solution_path = sorted((ROOT / "solutions" / assignment).glob("*.ipynb"))[0]
    name = solution_path.name
    instructor = read(solution_path)
    parts = exercises.load(assignment).parts
    points = {part.name: part.points for part in parts}
    total = sum(points.values())

    write_submission(submissions, "instructor", instructor, name)
    write_submission(submissions, "untouched", read(ROOT / "assignments" / assignment / name), name)
    broken = {f"broken-{start}": parts[start::2] for start in (0, 1)}  # submission: the parts broken in it
    for student, broken_parts in broken.items():
        notebook = read(solution_path)
        for part in broken_parts:
            cell = notebook.cells[solution_index(notebook, part.name)]
            cell.source = perturbed(cell.source, part.name)
        write_submission(submissions, student, notebook, name)
    expected_bugs: dict[str, dict[str, str]] = {}  # submission: {part: the typical bug in it}
    for number in range(max(len(part.bugs) for part in parts)):
        notebook, chosen = instructor, {}
        for part in parts:
            if number < len(part.bugs):
                bug, function = list(part.bugs.items())[number]
                notebook, chosen[part.name] = replaced(notebook, part.name, function), bug
        write_submission(submissions, f"bugs-{number}", notebook, name)
        expected_bugs[f"bugs-{number}"] = chosen
    write_submission(submissions, "wrong-name", instructor, "my_homework.ipynb")
    first = parts[0]  # the reference imported under the part's name: no points for that part
    write_submission(submissions, "reference", with_source(instructor, first.name,
                                                           f"from {first.module} import {first.name}\n"), name)
    one_liners = ONE_LINERS.get(assignment, {})
    notebook = instructor
    for part_name, source in one_liners.items():
        notebook = with_source(notebook, part_name, source)
    write_submission(submissions, "one-liners", notebook, name)

    again = tmp_path / "again"  # graded at the same time by a second run: another process, another order
    regrade = {"instructor", "bugs-0", f"bugs-{len(expected_bugs) - 1}", "one-liners"}  # the last bugs: see above
    for student in regrade:
        shutil.copytree(submissions / student, again / student)
    feedback = tmp_path / "feedback"
    with ThreadPoolExecutor(1) as pool:
        second = pool.submit(autograde, assignment, again, tmp_path / "again.csv", "--jobs", "2")
        grades, _ = autograde(assignment, submissions, tmp_path / "grades.csv", "--jobs", "2", "--feedback",
                              str(feedback))
        regraded, _ = second.result()
    assert float(grades["instructor"]["max_score"]) == total
    assert (float(grades["instructor"]["score"]), grades["instructor"]["status"]) == (total, "graded")
    assert (float(grades["untouched"]["score"]), grades["untouched"]["status"]) == (0, "graded")
    untouched = feedback_parts(feedback / "untouched.html")
    assert all(untouched[part.name][0] == f"0 / {part.points:g}" for part in parts), untouched
    for student, broken_parts in broken.items():
        row, page = grades[student], feedback_parts(feedback / f"{student}.html")
        assert float(row["score"]) == total - sum(part.points for part in broken_parts), (student, page)
        for part in parts:
            expected = f"0 / {part.points:g}" if part in broken_parts else f"{part.points:g} / {part.points:g}"
            assert page[part.name][0] == expected, (student, part.name, page[part.name])
    for student, chosen in expected_bugs.items():
        row, page = grades[student], feedback_parts(feedback / f"{student}.html")
        assert float(row["score"]) == total - sum(points[part_name] for part_name in chosen), (student, page)
        for part_name, bug in chosen.items():
            assert page[part_name][0] == f"0 / {points[part_name]:g}", (student, part_name, page[part_name])
            assert f"typical bug: {bug}" in page[part_name][1], (student, bug, page[part_name])
    assert grades["wrong-name"]["status"] == "missing" and name in grades["wrong-name"]["detail"]
    row = grades["reference"]
    assert float(row["score"]) == total - points[first.name] and "reference" in row["detail"], row["detail"]
    page = feedback_parts(feedback / "one-liners.html")
    assert float(grades["one-liners"]["score"]) == total - sum(points[part] for part in one_liners), page
    for part_name in one_liners:
        assert page[part_name][0] == f"0 / {points[part_name]:g}", page[part_name]
        assert page[part_name][1].startswith("forbidden: "), page[part_name]

    assert regraded == {student: grades[student] for student in regraded}, "not the same rows when graded again"
    assert set(regraded) == regrade
