"""nbgrader extensions for this course: cap what a learner's notebook can print, and award the
test cells' points from the grader's own tests (``GradedExecute``)."""

import json
import os
import re
import time
from queue import Empty

from jupyter_core.utils import ensure_async, run_sync
from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Float, Integer, Unicode

import channel
import grader

HIDDEN_RE = re.compile(r"### BEGIN HIDDEN TESTS.*?(### END HIDDEN TESTS|$)", re.S)


def strip_hidden_source(source):
    """A cell's source without its hidden-test blocks (an unterminated block runs to the end)."""
    return HIDDEN_RE.sub("", source)


def is_test(cell):
    meta = cell.metadata.get("nbgrader", {})
    return bool(meta.get("grade")) and not meta.get("solution")


class CappedExecute(Execute):
    """nbgrader's Execute, keeping at most ``max_cell_output_bytes`` of output per cell.

    nbgrader's LimitOutput trims lines after execution; a single huge line, an image
    flood or a print loop would still be held in the grader's memory and written to the
    autograded notebook. This cap drops output as it arrives and leaves one note instead.
    """

    max_cell_output_bytes = Integer(200_000, help="Output kept per cell, in bytes.").tag(config=True)

    def output(self, outs, msg, display_id, cell_index):
        if msg["msg_type"] == "error":
            # Always kept (a dropped error would turn a failed test into a pass), but trimmed.
            content = msg["content"]
            content["evalue"] = str(content.get("evalue", ""))[:2000]
            content["traceback"] = [str(t)[:2000] for t in content.get("traceback", [])[:60]]
            return super().output(outs, msg, display_id, cell_index)
        sizes = self.__dict__.setdefault("_output_bytes", {})
        size = len(json.dumps(msg.get("content", {}), default=str))
        used = sizes.get(cell_index, 0)
        sizes[cell_index] = used + size
        if used + size <= self.max_cell_output_bytes:
            return super().output(outs, msg, display_id, cell_index)
        if used <= self.max_cell_output_bytes:
            note = NotebookNode(
                output_type="stream",
                name="stderr",
                text=f"[grader] output beyond {self.max_cell_output_bytes} bytes was dropped\n",
            )
            outs.append(note)
        return None


class GradedExecute(CappedExecute):
    """Run the learner's notebook, then award every test cell's points from the grader's own tests.

    The notebook runs in its (sandboxed) kernel as written, except that hidden-test blocks are
    removed from the test cells before they are sent to it: the kernel never sees hidden-test
    source. After the last cell, the tests of ``grader_dir/<set>.py`` run here, in the grader's
    process, and call the learner's functions through ``channel.py``; each test cell's outputs
    are then replaced by the grader's verdict (nbgrader's SaveAutoGrades, next in the pipeline,
    scores a cell with an error output zero and any other cell full). Whatever the notebook did
    to its kernel (hooks, patched builtins or numpy, fake modules, trace functions) can change
    the data its functions return, never the comparison or the cell outputs.
    """

    grader_dir = Unicode("", help="Folder of the grader tests, one <set>.py per problem set.").tag(config=True)
    call_timeout = Float(30.0, help="Seconds one call into the learner's kernel may take.").tag(config=True)
    notebook_timeout = Float(900.0, help="Seconds for the whole notebook, its cells and its tests.").tag(config=True)
    max_revivals = Integer(2, help="Kernel restarts (with the notebook replayed) after a call kills it.").tag(config=True)

    def preprocess(self, nb, resources=None, km=None):
        self._deadline = time.monotonic() + self.notebook_timeout
        self._replay, self._revivals = [], 0
        self.timeout_func = self._cell_timeout
        return super().preprocess(nb, resources, km)

    def _cell_timeout(self, cell):
        return max(1, min(int(self.timeout), int(self._deadline - time.monotonic()) + 1))

    def preprocess_cell(self, cell, resources, index):
        last = index == len(self.nb.cells) - 1
        if cell.cell_type == "code" and time.monotonic() < self._deadline:
            original = cell.source
            cell.source = strip_hidden_source(original)
            try:
                cell, resources = super().preprocess_cell(cell, resources, index)
            finally:
                cell.source = original
            self._replay.append(strip_hidden_source(original))
        if last:
            self.grade_tests(resources)
        return cell, resources

    # ---------------------------------------------------------------- the grader's tests

    def grade_tests(self, resources):
        name = resources.get("nbgrader", {}).get("assignment", "")
        path = os.path.join(self.grader_dir, f"{name}.py")
        tests = grader.load(path) if os.path.isfile(path) else {}
        cells = [c for c in self.nb.cells if c.cell_type == "code" and is_test(c)]
        ids = [c.metadata["nbgrader"]["grade_id"] for c in cells]
        self._install()
        learner = grader.Learner(self._send, self.call_timeout)
        verdicts = grader.run(tests, learner, ids, deadline=self._deadline)
        for cell, gid in zip(cells, ids):
            hidden = "BEGIN HIDDEN TESTS" in cell.source
            cell.outputs = [NotebookNode(o) for o in grader.outputs(gid, verdicts[gid], hidden)]
            cell.execution_count = None

    def _install_code(self):
        with open(channel.__file__) as fh:
            src = fh.read()
        return ("__steplab_ns__ = {}\n"
                f"exec(compile({src!r}, '<steplab-channel>', 'exec'), __steplab_ns__)\n"
                "__steplab_channel__ = __steplab_ns__['Channel'](get_ipython().user_ns)\n"
                "del __steplab_ns__\n")

    def _install(self):
        try:
            self._send(self._install_code(), self.call_timeout)
        except grader.GraderFailure:
            pass

    def _send(self, code, timeout):
        return run_sync(self._async_send)(code, timeout)

    async def _async_send(self, code, timeout):
        if self._revivals > self.max_revivals:
            raise grader.GraderFailure("KernelDied")
        timeout = min(timeout, self._deadline - time.monotonic())
        if timeout <= 0:
            raise grader.GraderFailure("Timeout")
        try:
            return await self._roundtrip(code, timeout)
        except grader.GraderFailure as exc:
            if exc.kind == "Timeout" and await self._interrupted():
                raise
            await self._revive()
            raise

    async def _interrupted(self):
        """Interrupt a call that ran out of time; True when the kernel answers again."""
        try:
            await ensure_async(self.km.interrupt_kernel())
            await self._roundtrip("pass", 10)
            return True
        except Exception:  # noqa: BLE001  (an unresponsive kernel is restarted)
            return False

    async def _roundtrip(self, code, timeout):
        """Execute code; return the channel payloads it published, once the kernel is idle again."""
        msg_id = self.kc.execute(code, store_history=False, allow_stdin=False, stop_on_error=False)
        deadline, payloads, size = time.monotonic() + timeout, [], 0
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise grader.GraderFailure("Timeout")
            try:
                msg = await ensure_async(self.kc.get_iopub_msg(timeout=min(remaining, 1.0)))
            except Empty:
                if not await ensure_async(self.km.is_alive()):
                    raise grader.GraderFailure("KernelDied") from None
                continue
            if msg.get("parent_header", {}).get("msg_id") != msg_id:
                continue
            kind, content = msg["msg_type"], msg.get("content", {})
            if kind in ("display_data", "execute_result") and channel.MIME in content.get("data", {}):
                text = content["data"][channel.MIME]
                size += len(text) if isinstance(text, str) else 0
                if isinstance(text, str) and size <= channel.MAX_BYTES:
                    payloads.append(text)
            elif kind == "status" and content.get("execution_state") == "idle":
                return payloads

    async def _revive(self):
        """A new kernel with the notebook replayed, so that the remaining tests still run."""
        self._revivals += 1
        if self._revivals > self.max_revivals:
            return
        try:
            await ensure_async(self.km.restart_kernel(now=True))
            await ensure_async(self.kc.wait_for_ready(timeout=60))
            for src in self._replay:
                await self._roundtrip(src, max(1.0, min(self.timeout, self._deadline - time.monotonic())))
            await self._roundtrip(self._install_code(), self.call_timeout)
        except Exception:  # noqa: BLE001  (a kernel that cannot be revived fails the remaining tests)
            self._revivals = self.max_revivals + 1
