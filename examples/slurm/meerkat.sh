# shellcheck shell=bash
# Sourced by the .sbatch files: `meerkat` from the SIF when MEERKAT_SIF names one, else from PATH.
# The SIF is read-only and $HOME stays the user's; nothing is downloaded (weights are baked in).
# MEERKAT_APPTAINER and MEERKAT_APPTAINER_FLAGS change the apptainer command (e.g. --no-privs as root).
meerkat() {
  if [ -n "${MEERKAT_SIF:-}" ]; then
    local nv=""
    [ "${MEERKAT_GPUS:-0}" -gt 0 ] && nv=--nv
    # shellcheck disable=SC2086  # the flags are words
    ${MEERKAT_APPTAINER:-apptainer} exec $nv ${MEERKAT_APPTAINER_FLAGS:-} \
      --bind "$MEERKAT_SAMPLES" --bind "$MEERKAT_OUTPUT" "$MEERKAT_SIF" meerkat "$@"
  else
    command meerkat "$@"
  fi
}
