# shellcheck shell=bash
# Sourced by the .sbatch files: `meerkat` from the SIF when MEERKAT_SIF names one, else from PATH.
# The SIF is read-only and $HOME stays the user's; nothing is downloaded (weights are baked in).
# MEERKAT_APPTAINER names the apptainer program. MEERKAT_APPTAINER_FLAGS adds options, split at
# spaces (e.g. --no-privs as root). $MEERKAT_SAMPLES, $MEERKAT_OUTPUT and the folders a script adds
# to the array meerkat_binds are bound at the same paths; each is one argument, spaces and all.
meerkat_binds=()
meerkat() {
  if [ -n "${MEERKAT_SIF:-}" ]; then
    local options=(exec) flags=() folder
    if [ "${MEERKAT_GPUS:-0}" -gt 0 ]; then options+=(--nv); fi
    read -r -a flags <<<"${MEERKAT_APPTAINER_FLAGS:-}"
    options+=("${flags[@]}")
    for folder in "$MEERKAT_SAMPLES" "$MEERKAT_OUTPUT" "${meerkat_binds[@]}"; do
      options+=(--bind "$folder")
    done
    "${MEERKAT_APPTAINER:-apptainer}" "${options[@]}" "$MEERKAT_SIF" meerkat "$@"
  else
    command meerkat "$@"
  fi
}
