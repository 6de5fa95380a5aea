"""notebooks/quickstart.ipynb runs top to bottom (its cells assert what they show), the classifier it
trains included."""

import nbclient
import nbformat

from tests.conftest import ROOT


def test_quickstart_notebook_executes(embedded_backend):
    notebook = nbformat.read(ROOT / "notebooks" / "quickstart.ipynb", as_version=4)
    client = nbclient.NotebookClient(
        notebook, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(ROOT)}}
    )
    client.execute()
    outputs = [o for cell in notebook.cells for o in cell.get("outputs", [])]
    texts = [o.get("text", "") for o in outputs]
    assert any("Paris" in text for text in texts)
    assert any("held-out rows" in text for text in texts)  # the trained classifier's metrics
    assert any("image/png" in o.get("data", {}) for o in outputs)  # its confusion matrix, plotted
