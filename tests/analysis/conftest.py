import pytest


@pytest.fixture
def arch(tmp_path):
    """Write a spec to a file and return its path: arch('conv(8, 3)', shape='3x32x32')."""
    def make(body: str, shape: str = "3x32x32", blocks: str = "", name: str = "net") -> str:
        p = tmp_path / f"{name}.arch"
        p.write_text(f"{blocks}\nnetwork {name} {{\n  input x: {shape}\n{body}\n}}\n")
        return str(p)
    return make
