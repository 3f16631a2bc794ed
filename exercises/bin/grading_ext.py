"""nbgrader extensions for this course: cap what a learner's notebook can print."""

import json

from nbformat.notebooknode import NotebookNode
from nbgrader.preprocessors import Execute
from traitlets import Integer


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
