"""quickstart.sh and ko-en-base.sh pass extra arguments to run_train.py but evaluate MODEL_DIR: an --output_dir among
them would train one folder and evaluate another (the quickstart then reported an older model), so they refuse it
before building or training anything."""
import os
import subprocess

import pytest


@pytest.mark.parametrize("script", ["quickstart.sh", "ko-en-base.sh"])
@pytest.mark.parametrize("form", ["two", "joined"])
def test_scripts_refuse_output_dir_before_doing_anything(script, form, tmp_path):
    target = tmp_path / "model"
    args = ["--max_steps", "3"] + (["--output_dir", str(target)] if form == "two" else [f"--output_dir={target}"])
    proc = subprocess.run(["bash", script, *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, "DATA_DIR": str(tmp_path / "no-data")})
    assert proc.returncode == 2
    assert proc.stderr.strip() == (f"{script}: set MODEL_DIR=... instead of --output_dir "
                                   "(the evaluation reads the same folder)")
    assert proc.stdout == "" and not target.exists()
