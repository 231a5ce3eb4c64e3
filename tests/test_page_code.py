"""tools/page_code.py: a page's Python fences become a runnable script and a valid notebook."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import page_code  # noqa: E402

PAGE = '''# A page

Some text.

```python
x = 2
```

!!! note "Inside an admonition"
    ```{.python exec="on" result="text" source="above"}
    y = x * 3
    print("y =", y)
    ```

=== "A tab"

    ```{.python continuation}
    print("tab sees", y)
    ```

```{.python notest}
import torch; torch.cuda.synchronize()  # needs a GPU
```

```bash
echo not python
```

```py
print("done", x + y)
```

The end.
'''


def test_finds_every_python_fence_in_order():
    blocks = page_code.python_blocks(PAGE)
    assert [b.code.split("\n")[0] for b in blocks] == [
        "x = 2", "y = x * 3", 'print("tab sees", y)', "import torch; torch.cuda.synchronize()  # needs a GPU",
        'print("done", x + y)']
    assert [b.notest for b in blocks] == [False, False, False, True, False]
    assert blocks[0].line == 5 and PAGE.split("\n")[blocks[0].line - 1] == "```python"


def test_script_runs_top_to_bottom_and_comments_out_notest(tmp_path):
    script = page_code.to_script(page_code.python_blocks(PAGE), "x/page.md", "/x/page/")
    assert "# import torch; torch.cuda.synchronize()" in script
    path = tmp_path / "page.py"
    path.write_text(script, encoding="utf-8")
    out = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["y = 6", "tab sees 6", "done 8"]


def test_notebook_is_valid_and_keeps_the_text():
    nbformat = __import__("pytest").importorskip("nbformat")
    blocks = page_code.python_blocks(PAGE)
    nb = nbformat.reads(page_code.to_notebook(blocks, "A page", "/x/page/", PAGE), as_version=4)
    nbformat.validate(nb)
    kinds = [c.cell_type for c in nb.cells]
    assert kinds.count("code") == len(blocks)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "Some text." in text and "The end." in text and "```bash" in text
    assert "```python" not in text and "{.python" not in text and "x = 2" not in text
    code = [c.source for c in nb.cells if c.cell_type == "code"]
    assert code[0] == "x = 2" and code[3].startswith("# import torch")


def test_no_python_no_blocks():
    assert page_code.python_blocks("# Title\n\n```bash\nls\n```\n") == []
    assert json.loads(page_code.to_notebook([], "t", "/t/"))["nbformat"] == 4


def test_links_become_absolute_in_notebooks():
    text = "See [GPT](gpt.md), [RAG](../rag/index.md#the-chapters), [out](https://x.org/a.md), [here](#top)."
    got = page_code.absolutize_links(text, "transformers/attention.md", "https://site.org/llmnotes/")
    assert got == ("See [GPT](https://site.org/llmnotes/transformers/gpt/), "
                   "[RAG](https://site.org/llmnotes/rag/#the-chapters), [out](https://x.org/a.md), [here](#top).")
    assert page_code.absolutize_links("[Home](index.md)", "index.md", "https://s.org/") == "[Home](https://s.org/)"
