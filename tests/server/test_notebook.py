"""notebooks/quickstart.ipynb runs top to bottom (its cells assert what they show)."""

import nbclient
import nbformat

from tests.conftest import ROOT


def test_quickstart_notebook_executes(embedded_backend):
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = [o.get("text", "") for cell in notebook.cells for o in cell.get("outputs", [])]
    assert any("Paris" in text for text in outputs)
