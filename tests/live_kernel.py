"""Drive a widget through a real Jupyter kernel, the way a browser does.

A browser that shows a widget talks to the kernel over comms: the kernel opens one comm per widget
model (``comm_open``, with the model's state), and when the reader moves a control the browser
sends a ``comm_msg`` with ``{"method": "update", "state": {...}}``. The kernel-side callbacks run
and send back ``update`` messages for the models they changed, an ``Output`` widget's new
``outputs`` among them. :class:`LiveKernel` plays the browser's part, so a test can check that a
control change puts a new figure inside the widget's own output, on any ipywidgets version the
kernel has (7.7 and 8.x speak the same messages for this).
"""

from __future__ import annotations

import json
import os
import queue
import sys
from pathlib import Path

from jupyter_client import KernelManager

PLOTLY_MIME = "application/vnd.plotly.v1+json"
STAGE_CACHE = Path(__file__).resolve().parents[1] / "_build" / "stage-cache"  # the build's


def reader_env(stage_cache: Path = STAGE_CACHE, base: dict | None = None) -> dict[str, str]:
    """The environment of a reader's kernel: ``stage_cache``, and nothing of the website build
    (with ``RLHF_BOOK_BUILD`` set, figures would render for the static site)."""
    env = {k: v for k, v in (base or os.environ).items() if k != "RLHF_BOOK_BUILD"}
    env["RLHF_BOOK_CACHE"] = str(stage_cache)
    return env


def write_kernelspec(folder: Path, python: str | Path = sys.executable, name="reader") -> str:
    """A kernelspec that starts ``python``'s ipykernel (for example a clean virtual environment).

    Jupyter finds it when ``folder`` is on ``JUPYTER_PATH``."""
    spec = folder / "kernels" / name
    spec.mkdir(parents=True, exist_ok=True)
    argv = [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": name, "language": "python"})
    )
    return name


class LiveKernel:
    """A kernel with a minimal stand-in for the browser's widget manager."""

    def __init__(self, kernel_name="python3", env=None):
        self.manager = KernelManager(kernel_name=kernel_name)
        self.manager.start_kernel(env=env or reader_env())
        self.client = self.manager.client()
        self.client.start_channels()
        self.client.wait_for_ready(timeout=60)
        self.models: dict[str, dict] = {}  # comm id -> the model's state, as the browser knows it

    def close(self):
        self.client.stop_channels()
        self.manager.shutdown_kernel(now=True)

    def _drain(self, parent_id: str, timeout: float) -> list[dict]:
        """Read iopub until the kernel is idle after ``parent_id``; apply widget messages."""
        errors, messages = [], []
        while True:
            try:
                msg = self.client.get_iopub_msg(timeout=timeout)
            except queue.Empty as exc:
                raise TimeoutError(f"the kernel did not finish within {timeout} s") from exc
            kind, content = msg["msg_type"], msg["content"]
            messages.append(msg)
            if kind == "comm_open" and content.get("target_name") == "jupyter.widget":
                self.models[content["comm_id"]] = dict(content["data"]["state"])
            elif kind == "comm_msg" and content["comm_id"] in self.models:
                data = content["data"]
                if data.get("method") in ("update", "echo_update"):
                    self.models[content["comm_id"]].update(data["state"])
            elif kind == "error":
                errors.append("\n".join(content["traceback"]))
            if (
                kind == "status"
                and content["execution_state"] == "idle"
                and msg["parent_header"].get("msg_id") == parent_id
            ):
                break
        if errors:
            raise RuntimeError("the kernel raised:\n" + "\n".join(errors))
        return messages

    def run(self, code: str, timeout: float = 120) -> list[dict]:
        """Execute ``code``; raise with the kernel's traceback if it fails."""
        return self._drain(self.client.execute(code), timeout)

    def find(self, model_name: str, **state) -> str:
        """The comm id of the one widget of ``model_name`` whose state matches ``state``."""
        found = [
            comm_id
            for comm_id, model in self.models.items()
            if model.get("_model_name") == model_name
            and all(model.get(k) == v for k, v in state.items())
        ]
        if len(found) != 1:
            raise LookupError(f"{len(found)} {model_name} widgets match {state}")
        return found[0]

    def move(self, comm_id: str, timeout: float = 120, **state) -> None:
        """Send what a browser sends when the reader changes a control, and wait for the redraw."""
        content = {"comm_id": comm_id, "data": {"method": "update", "state": state,
                                                "buffer_paths": []}}  # fmt: skip
        msg = self.client.session.msg("comm_msg", content)
        self.client.shell_channel.send(msg)
        self._drain(msg["header"]["msg_id"], timeout)

    def figures_in(self, output_id: str) -> list[dict]:
        """The plotly figures an ``Output`` widget shows now (its own ``outputs``)."""
        outputs = self.models[output_id].get("outputs", [])
        return [o["data"][PLOTLY_MIME] for o in outputs if PLOTLY_MIME in o.get("data", {})]
