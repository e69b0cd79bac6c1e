"""Running a notebook when the kernel's reply to a cell may never arrive.

nbclient runs a cell by sending an `execute_request` on the shell channel and waiting for the
`execute_reply`, while it records the cell's outputs from the IOPub channel until the kernel
reports itself idle. Now and then the reply never arrives: on 2026-12-02 a full book build
waited on `book/finetune.ipynb` with its kernel idle, the cell (a widget) executed (the
kernel's own history had it), no `execute_reply` on the shell connection (its TCP socket had
received nothing since the request was sent), and nothing left queued in any of the kernel's
streams. nbclient then waits for the cell's whole timeout (15 minutes in a full build, 2 in a
smoke build) and fails the notebook, which is run again: the "page that now and then takes
minutes" of earlier builds fits this.

`ReplyTolerantClient` waits for whichever comes first. The reply: as nbclient. The kernel's
IOPub "idle" for the cell: it has finished the cell; the reply then gets `reply_grace` seconds
more, and if it has not come by then, the cell's reply is rebuilt from what IOPub recorded
(an error output means status "error", with its name, value and traceback), the cell is
listed in `lost_replies`, and the run goes on. Both messages lost: nbclient's timeout, as
before.
"""

from __future__ import annotations

import asyncio
import typing as t

from nbclient import NotebookClient
from traitlets import Float, List


class ReplyTolerantClient(NotebookClient):
    """A NotebookClient that does not wait for a lost `execute_reply` once the kernel has said the cell is done."""

    # The kernel sends the reply before it reports idle: a reply later than this is lost. One that is only late
    # does no harm: the outputs give the same status, and nbclient ignores a reply to an earlier cell.
    reply_grace = Float(10.0, help="seconds to wait for the execute_reply after the kernel reported the cell "
                                   "idle on IOPub").tag(config=True)
    lost_replies = List(help="indices of the cells whose reply was rebuilt from IOPub")

    async def _async_poll_for_reply(self, msg_id: str, cell, timeout, task_poll_output_msg: asyncio.Future,
                                    task_poll_kernel_alive: asyncio.Future, *args: t.Any) -> dict[str, t.Any]:
        waiting = asyncio.ensure_future(super()._async_poll_for_reply(
            msg_id, cell, timeout, task_poll_output_msg, task_poll_kernel_alive, *args))
        try:
            done, _ = await asyncio.wait({waiting, task_poll_output_msg}, return_when=asyncio.FIRST_COMPLETED)
            if waiting in done or task_poll_output_msg.cancelled() or task_poll_output_msg.exception() is not None:
                return await waiting  # the reply, nbclient's timeout, or IOPub's own error as nbclient has it
            # The kernel reported the cell idle: it has finished it. The reply normally follows at once.
            done, _ = await asyncio.wait({waiting}, timeout=self.reply_grace)
            if waiting in done:
                return waiting.result()
        except BaseException:
            waiting.cancel()
            raise
        waiting.cancel()
        task_poll_kernel_alive.cancel()
        index = next((i for i, c in enumerate(self.nb.cells) if c is cell), -1)
        self.lost_replies.append(index)
        self.log.warning(f"cell {index}: the kernel finished it, but its execute_reply did not arrive within "
                         f"{self.reply_grace:g} s; going on with what IOPub recorded")
        return self._reply_from_outputs(msg_id, cell)

    def lost_replies_note(self) -> str:
        """What to tell the reader of a log about the lost replies: "" if none, else which cells."""
        if not self.lost_replies:
            return ""
        cells = ", ".join(map(str, self.lost_replies))
        return f"the kernel's reply to cell{'s' * (len(self.lost_replies) > 1)} {cells} was lost and not waited for"

    @staticmethod
    def _reply_from_outputs(msg_id: str, cell) -> dict[str, t.Any]:
        """An execute_reply as the kernel would have sent it, from the cell's recorded outputs."""
        errors = [output for output in cell.get("outputs", []) if output.get("output_type") == "error"]
        content: dict[str, t.Any] = {"status": "ok", "execution_count": cell.get("execution_count")}
        if errors:
            content.update(status="error", ename=errors[-1].get("ename", ""), evalue=errors[-1].get("evalue", ""),
                           traceback=errors[-1].get("traceback", []))
        return {"parent_header": {"msg_id": msg_id}, "msg_type": "execute_reply", "header": {}, "metadata": {},
                "content": content}
