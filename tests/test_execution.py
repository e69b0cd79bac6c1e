"""dl4nlp.instructor.execution: a notebook runs on when the kernel's reply to a cell is lost.

The first cell makes the kernel drop its own next execute_reply (as the full book build of
2026-12-02 saw it happen), so the cell is finished in the kernel while the client hears only
IOPub's "idle"."""

from __future__ import annotations

import time

import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError, CellTimeoutError

from dl4nlp.instructor.execution import ReplyTolerantClient

DROP_NEXT_REPLY = """\
kernel = get_ipython().kernel
send, dropped = kernel.session.send, []
def drop_one_reply(stream, msg_or_type, *args, **kwargs):
    if msg_or_type == "execute_reply" and not dropped:
        dropped.append(True)
        return {"content": {"status": "ok"}}  # what the kernel reads back from a sent reply
    return send(stream, msg_or_type, *args, **kwargs)
kernel.session.send = drop_one_reply"""


def notebook(*sources: str) -> nbformat.NotebookNode:
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(source) for source in sources])


def test_a_lost_reply_costs_the_grace_period_not_the_timeout():
    nb = notebook(DROP_NEXT_REPLY + "\nprint('cell 0 ran')", "print('after the lost reply')")
    client = ReplyTolerantClient(nb, timeout=120, reply_grace=1, kernel_name="python3")
    start = time.perf_counter()
    client.execute()
    assert time.perf_counter() - start < 60
    assert client.lost_replies == [0]
    assert client.lost_replies_note() == "the kernel's reply to cell 0 was lost and not waited for"
    assert nb.cells[0].outputs[0].text == "cell 0 ran\n" and nb.cells[0].execution_count == 1
    assert nb.cells[1].outputs[0].text == "after the lost reply\n" and nb.cells[1].execution_count == 2


def test_an_error_in_a_cell_whose_reply_was_lost_still_fails_the_run():
    nb = notebook(DROP_NEXT_REPLY + "\nraise ValueError('the student forgot something')", "print('never')")
    client = ReplyTolerantClient(nb, timeout=120, reply_grace=1, kernel_name="python3")
    with pytest.raises(CellExecutionError, match="the student forgot something"):
        client.execute()
    assert client.lost_replies == [0] and not nb.cells[1].get("outputs")


def test_without_it_nbclient_waits_for_the_whole_timeout():  # the failure the client is for
    nb = notebook(DROP_NEXT_REPLY, "print('never')")
    with pytest.raises(CellTimeoutError):
        NotebookClient(nb, timeout=4, kernel_name="python3").execute()
