"""Inside the image, a folder meerkat writes must be a mount: the container's own files are lost with it.

Issue 22: `docker run -v $PWD/small:/data/Samples:ro meerkat:cpu` trained into the image's /data/Output,
printed `Done`, exited 0 and left nothing on the host."""

import pytest
from conftest import assert_user_error, make_samples

from meerkat import doctor
from meerkat.core.errors import MeerkatError

# /proc/self/mountinfo in a podman container run with -v ...:/data/Samples:ro and --tmpfs /tmp
# (shortened): the mount point is the fifth field, with space, tab, newline and backslash as octal.
MOUNTINFO = """\
84 57 0:41 / / rw,relatime - overlay overlay rw,lowerdir=/var/lib/containers/storage/overlay/l/EIC6
85 84 0:44 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
86 84 0:45 / /dev rw,nosuid,noexec - tmpfs tmpfs rw,size=65536k,mode=755
90 84 254:1 /work/shared/data/small /data/Samples ro,relatime - ext4 /dev/vda1 rw
91 84 0:50 / /tmp rw,nosuid,nodev - tmpfs tmpfs rw,size=4096k
92 84 254:1 /home/u/my\\040runs /data/My\\040runs rw,relatime - ext4 /dev/vda1 rw
"""


def test_mount_points_are_read_from_mountinfo(tmp_path):
    info = tmp_path / "mountinfo"
    info.write_text(MOUNTINFO)
    assert doctor.mount_points(info) == ["/", "/proc", "/dev", "/data/Samples", "/tmp", "/data/My runs"]
    assert doctor.mount_points(tmp_path / "none") is None


def test_an_output_that_is_not_mounted_is_refused_with_the_mount_to_add(tmp_path):
    mounts = ["/", "/proc", str(tmp_path / "Samples")]
    with pytest.raises(MeerkatError) as e:
        doctor.check_mounts(None, tmp_path / "Output", mounts)
    message = str(e.value)
    assert f"Output folder {tmp_path / 'Output'} is not a mount" in message and "\n" not in message
    assert f"-v $PWD/Output:{tmp_path / 'Output'}" in message
    assert f"--bind $PWD/Output:{tmp_path / 'Output'}" in message
    assert not (tmp_path / "Output").exists()


def test_an_output_on_a_mount_is_taken_wherever_it_is(tmp_path, monkeypatch):
    """MEERKAT_OUTPUT or `run SAMPLES OUT` may name any mounted folder, or a folder below one."""
    mounted = tmp_path / "Work"
    mounted.mkdir()
    mounts = ["/", str(mounted)]
    doctor.check_mounts(None, mounted, mounts)
    doctor.check_mounts(None, mounted / "runs" / "a", mounts)
    assert (mounted / "runs" / "a").is_dir()
    (tmp_path / "link").symlink_to(mounted)
    doctor.check_mounts(None, tmp_path / "link" / "b", mounts)
    monkeypatch.chdir(mounted)
    doctor.check_mounts(None, doctor.Path("c"), mounts)
    with pytest.raises(MeerkatError, match="is not a mount"):
        doctor.check_mounts(None, tmp_path / "Work2", mounts)  # a name that starts like the mount's


def test_outside_the_image_nothing_needs_to_be_a_mount(tmp_path, monkeypatch):
    monkeypatch.setattr(doctor, "IMAGE_INFO", tmp_path / "image.json")
    assert doctor.container_mounts() is None
    (tmp_path / "image.json").write_text("{}")
    monkeypatch.setattr(doctor, "MOUNTINFO", tmp_path / "mountinfo")
    assert doctor.container_mounts() is None  # no /proc: it cannot tell, and checks nothing
    (tmp_path / "mountinfo").write_text(MOUNTINFO)
    assert doctor.container_mounts()[-1] == "/data/My runs"


@pytest.fixture
def in_image(tmp_path, monkeypatch):
    """meerkat as it runs in its image, where only the Samples folder is mounted."""
    (tmp_path / "image.json").write_text("{}")
    samples = make_samples(tmp_path / "Samples", train=(3, 3))
    (tmp_path / "mountinfo").write_text(
        f"84 57 0:41 / / rw - overlay overlay rw\n90 84 254:1 / {samples} ro - ext4 x rw\n"
    )
    monkeypatch.setattr(doctor, "IMAGE_INFO", tmp_path / "image.json")
    monkeypatch.setattr(doctor, "MOUNTINFO", tmp_path / "mountinfo")
    return samples


def test_run_in_the_image_without_an_output_mount_stops_at_once(in_image, tmp_path, cli):
    result = cli("run", in_image, tmp_path / "Output", "--epochs", 2)
    assert_user_error(result, 1, f"Output folder {tmp_path / 'Output'} is not a mount", "-v $PWD/Output:")
    assert not (tmp_path / "Output").exists()


def test_run_in_the_image_checks_samples_unless_it_trains_on_preprocessed_sets(in_image, tmp_path, cli):
    (tmp_path / "Empty").mkdir()
    result = cli("run", tmp_path / "Empty", tmp_path / "Output")
    assert_user_error(result, 1, f"Samples folder {tmp_path / 'Empty'} is empty")
    sets = {"MEERKAT_PREPROCESSED_TRAIN_SET": "/data/Prev/train", "MEERKAT_PREPROCESSED_EVAL_SET": "/data/Prev/eval"}
    result = cli("run", tmp_path / "Empty", tmp_path / "Output", env=sets)
    assert_user_error(result, 1, "is not a mount")
