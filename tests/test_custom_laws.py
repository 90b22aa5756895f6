"""docs/custom_laws.md's worked example runs as written, and a bad user law is one line naming
the problem with exit 2 (no traceback): a plain function, a typo'd parameter or input, a wrong
return shape, a file that is missing, fails to load or lacks the name."""

import json
import re
from pathlib import Path

import numpy as np
import pytest

from fitting.laws import get_law
from scalesweep.cli import main

DOC = Path(__file__).resolve().parents[1] / "docs" / "custom_laws.md"

LAW_FILE = '''
import numpy as np
from fitting.law import IDENTITY, LOG, Law

def PLAIN(N, D, E, A, alpha):
    return E + A / N ** alpha

def _f(name):
    return lambda p, X: p["E"] + p["A"] / X["N"] ** p[name]

def _wide(p, X):
    return np.stack([X["N"], X["D"]]) * p["E"]

KW = dict(param_names=("E", "A", "alpha"), transforms=(LOG, LOG, IDENTITY),
          init_box=((-1, 1), (2, 8), (0.1, 0.6)))
GOOD = Law(name="good", fn=_f("alpha"), inputs=("N",), **KW)
TYPO = Law(name="typo", fn=_f("alpah"), inputs=("N",), **KW)
TYPO_INPUT = Law(name="typo_input", fn=lambda p, X: p["E"] + p["A"] / X["params"] ** p["alpha"],
                 inputs=("N",), **KW)
WIDE = Law(name="wide", fn=_wide, inputs=("N", "D"), **KW)
NATURAL_BOX = Law(name="natural", fn=_f("alpha"), inputs=("N",), **dict(KW, init_box=((0.5, 3), (10, 1e5), (0.1, 1))))
'''


@pytest.fixture()
def laws(tmp_path):
    path = tmp_path / "laws.py"
    path.write_text(LAW_FILE)
    return path


def test_the_documented_example_fits(tmp_path, capsys):
    code = re.search(r"```python\n(.*?)```", DOC.read_text(), flags=re.S).group(1)
    (tmp_path / "my_laws.py").write_text(code)
    N = np.repeat([1e7, 3e7, 1e8, 3e8], 3)
    D = N * np.tile([5.0, 20.0, 80.0], 4)
    y = (1.8 + 400 / N ** 0.35 + 2000 / D ** 0.35) * np.exp(0.003 * np.sin(np.arange(12)))
    (tmp_path / "runs.csv").write_text("N,D,loss\n" + "".join(f"{a:g},{b:g},{c:.8f}\n" for a, b, c in zip(N, D, y)))
    rc = main(["fit", str(tmp_path / "runs.csv"), "--law", f"{tmp_path}/my_laws.py:SHARED", "--bootstrap", "0",
               "--json"])
    out = json.loads(capsys.readouterr().out)
    assert rc == 0 and out["law"] == "shared_exponent"
    assert abs(out["params"]["alpha"] - 0.35) < 0.02, out["params"]
    assert "my_laws.py:SHARED" in DOC.read_text() and "custom_laws.md" in (DOC.parents[1] / "README.md").read_text()


def test_a_good_user_law_resolves(laws):
    assert get_law(f"{laws}:GOOD").name == "good"


@pytest.mark.parametrize("name, says", [
    ("PLAIN", "plain function of N, D, E, A, alpha"),
    ("TYPO", "reads p['alpah'], which is not one of its parameters (E, A, alpha)"),
    ("TYPO_INPUT", "reads X['params'], which is not one of its inputs (N)"),
    ("WIDE", "returned shape (2, 3)"),
    ("NATURAL_BOX", "init_box for A is (10, 100000), but init_box is in the fitted space"),
    ("NOPE", "has no attribute 'NOPE' (its laws: GOOD, NATURAL_BOX, TYPO, TYPO_INPUT, WIDE)"),
])
def test_a_bad_user_law_is_one_line_exit_2(laws, tmp_path, capsys, name, says):
    (tmp_path / "r.csv").write_text("N,D,loss\n1e7,1e8,3.0\n1e8,1e9,2.5\n1e9,1e10,2.2\n3e9,3e10,2.1\n")
    rc = main(["fit", str(tmp_path / "r.csv"), "--law", f"{laws}:{name}", "--bootstrap", "0"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1 and says in err, err


def test_a_law_file_that_is_missing_or_broken(tmp_path):
    with pytest.raises(FileNotFoundError, match="law file not found"):
        get_law(f"{tmp_path}/none.py:LAW")
    (tmp_path / "broken.py").write_text("x = (\n")
    with pytest.raises(ValueError, match=r"cannot be loaded \(line 1\): SyntaxError"):
        get_law(f"{tmp_path}/broken.py:LAW")
    (tmp_path / "raises.py").write_text("import no_such_module_here\n")
    with pytest.raises(ValueError, match="ModuleNotFoundError"):
        get_law(f"{tmp_path}/raises.py:LAW")
