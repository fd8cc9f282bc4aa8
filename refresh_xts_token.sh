#!/usr/bin/env bash
#
# Cron wrapper for the XTS token refresher.
#
# Cron starts jobs with PATH=/usr/bin:/bin, no locale and $HOME as the working folder. This
# wrapper finds its own folder (also through a symlink), works from there, runs the program
# with the project's virtualenv, passes every argument on and exits with the program's exact
# exit code (0 ok, 1 login refused, 2 settings, 3 XTS unreachable, 4 local, 5 hook).
#
#   ./refresh_xts_token.sh [COMMAND] [OPTIONS]   run xts_token_refresh.py (default: refresh)
#   ./refresh_xts_token.sh --setup               create .venv, install requirements, create .env
#   ./refresh_xts_token.sh --print-venv          (internal) the virtualenv it would use, or nothing
#
# The virtualenv is found here alone (a Python must be chosen before any Python runs);
# xts_token_refresh.py started by a Python without the packages asks --print-venv. What the
# program knows (its packages, the command the arguments name, what an exit code means) the
# wrapper asks of xts_refresher.wrapper.

set -euo pipefail
# An exported CDPATH would make `cd` print folders and change where relative paths lead.
unset CDPATH
# A reader that goes away (`refresh_xts_token.sh | head -1`) must not cost the refresh: SIGPIPE
# would kill this script at its next echo, and under `set -e` an echo failing with EPIPE would
# end it. So SIGPIPE is ignored (Python ignores it anyway and handles EPIPE itself; its own
# child processes get the default back) and the wrapper's echo lines fail quietly.
trap '' PIPE
# systemd stops a job with SIGTERM to each of its processes: the program then finishes the
# logins under way and exits 143. A trap (not an ignore, which the program would inherit) makes
# this script wait for it and report that, instead of dying first without a closing line.
trap ':' TERM
echo() { builtin echo "$@" 2>/dev/null || true; }

readonly RULE="=================================================="
readonly THIN_RULE="--------------------------------------------------"
readonly PROGRAM="xts_token_refresh.py"
readonly EXIT_CONFIG=2

# The folder holding this script, following symlinks (readlink -f is not on every macOS).
script_dir() {
  local source="${BASH_SOURCE[0]}"
  local dir
  while [[ -L "${source}" ]]; do
    dir="$(cd -P "$(dirname "${source}")" && pwd)"
    source="$(readlink "${source}")"
    [[ "${source}" == /* ]] || source="${dir}/${source}"
  done
  cd -P "$(dirname "${source}")" && pwd
}

# Prints the absolute folder of the virtualenv to use, or nothing: XTS_VENV (absolute, or
# relative to this folder), else .venv, else venv. The one place that says this order.
find_venv() {
  local candidate
  for candidate in "${XTS_VENV:-}" .venv venv; do
    if [[ -n "${candidate}" && -x "${candidate}/bin/python" ]]; then
      (cd "${candidate}" && pwd)
      return 0
    fi
  done
}

# Warns (on standard error) that XTS_VENV names no virtualenv, when none ($1) was found.
warn_about_xts_venv() {
  if [[ -n "${XTS_VENV:-}" && -z "$1" ]]; then
    echo "⚠ XTS_VENV=${XTS_VENV} has no bin/python; looking for .venv and venv instead." >&2
  fi
}

# The wrapper's own usage, shown above the program's --help (which knows nothing of --setup).
usage() {
  echo "Usage: refresh_xts_token.sh [COMMAND] [OPTIONS]   run ${PROGRAM} in the project's virtualenv"
  echo "                                                  (default: refresh), as cron does"
  echo "       refresh_xts_token.sh --setup               create .venv, install requirements.txt,"
  echo "                                                  create .env from .env.example (mode 600)"
  echo
}

setup() {
  local python="${XTS_PYTHON:-python3}"
  echo "Setting up the XTS token refresher in ${PWD}"
  if ! command -v "${python}" >/dev/null 2>&1; then
    echo "✗ ${python} was not found: install Python 3.9 or newer (apt-get install python3 python3-venv)."
    return "${EXIT_CONFIG}"
  fi
  if [[ ! -f .env.example ]]; then
    echo "✗ .env.example is missing from ${PWD}: restore it from the project's files."
    return "${EXIT_CONFIG}"
  fi
  if [[ -x .venv/bin/python ]]; then
    echo "✓ .venv already exists"
  elif "${python}" -m venv .venv; then
    local created
    created="$(.venv/bin/python --version 2>&1)" || created="${python}"
    echo "✓ Created .venv with ${created}"
  else
    echo "✗ Could not create .venv: on Debian/Ubuntu run 'apt-get install python3-venv',"
    echo "  remove the partial folder (rm -rf .venv), then run ./refresh_xts_token.sh --setup again."
    return "${EXIT_CONFIG}"
  fi
  if ! .venv/bin/python -c 'import pip' >/dev/null 2>&1; then
    echo "✗ .venv has no pip (python3-venv was missing when it was made): on Debian/Ubuntu run"
    echo "  'apt-get install python3-venv', then rm -rf .venv and ./refresh_xts_token.sh --setup."
    return "${EXIT_CONFIG}"
  fi
  if ! .venv/bin/python -m pip install --quiet --disable-pip-version-check -r requirements.txt; then
    echo "✗ pip could not install requirements.txt into .venv (see above)."
    return "${EXIT_CONFIG}"
  fi
  echo "✓ Installed requirements.txt into .venv"
  if [[ -e .env || -L .env ]]; then
    echo "✓ .env already exists: left as it is"
  else
    (umask 077 && cp .env.example .env)
    chmod 600 .env
    echo "✓ Created .env from .env.example (mode 600): put your broker's settings in it"
  fi
  if [[ -d accounts ]]; then
    # Account files hold API secrets: only their owner may read them. Only the owner may list
    # the folder, unless it is mode 750 (XTS_TOKEN_GROUP: the group's bots reach their tokens).
    local account_file count=0 folder_mode=700 opened
    opened="$(find accounts -prune -perm 750)" || opened=""
    if [[ -n "${opened}" ]]; then
      folder_mode=750
    fi
    if ! chmod "${folder_mode}" accounts; then
      echo "✗ Could not set accounts/ to mode ${folder_mode} (see above): run --setup as its owner."
      return "${EXIT_CONFIG}"
    fi
    for account_file in accounts/*.env; do
      [[ -f "${account_file}" ]] || continue # the pattern itself when nothing matches
      if ! chmod 600 "${account_file}"; then
        echo "✗ Could not set ${account_file} to mode 600 (see above): run --setup as its owner."
        return "${EXIT_CONFIG}"
      fi
      count=$((count + 1))
    done
    echo "✓ accounts/ is mode ${folder_mode} and its ${count} account file(s) accounts/*.env mode 600"
  else
    echo "  Several broker logins? Give each its own accounts/NAME.env (README, \"Several accounts\")."
  fi
  chmod +x refresh_xts_token.sh "${PROGRAM}"
  echo "✓ Scripts are executable"
  echo
  echo "Next: edit .env, then run ./${PROGRAM} check-config and ./refresh_xts_token.sh"
}

main() {
  local dir
  dir="$(script_dir)"
  cd "${dir}"

  case "${1:-}" in
    --setup)
      setup
      return
      ;;
    --print-venv)
      local found
      found="$(find_venv)"
      warn_about_xts_venv "${found}"
      [[ -z "${found}" ]] || printf '%s\n' "${found}"
      return
      ;;
    *) ;;
  esac

  # With --json, standard output carries the program's JSON alone: the wrapper's own lines go
  # to standard error (file descriptor 3 keeps the real standard output for the program).
  exec 3>&1
  local arg
  for arg in "$@"; do
    if [[ "${arg}" == "--json" ]]; then
      exec 1>&2
      break
    fi
  done

  # The Python to use, and what it says of itself and of the arguments, before any line is
  # printed: the command they name decides the first lines (the usage with --help).
  local venv python="" probe="" probe_code=0 version="" missing="" command="refresh"
  venv="$(find_venv)"
  if [[ -n "${venv}" ]]; then
    VIRTUAL_ENV="${venv}"
    python="${VIRTUAL_ENV}/bin/python"
    export VIRTUAL_ENV
    export PATH="${VIRTUAL_ENV}/bin:${PATH}"
  elif command -v python3 >/dev/null 2>&1; then
    python="$(command -v python3)"
  fi
  if [[ -n "${python}" ]]; then
    # One interpreter start-up reports the version, finds (without importing) the packages
    # and names the command; this folder is the working folder, so `python -c` finds the
    # package (nothing heavy).
    probe="$("${python}" -c 'import sys
from xts_refresher.wrapper import probe
probe(sys.argv[1:])' "$@" 2>&1)" || probe_code=$?
    if [[ "${probe_code}" -eq 0 ]]; then
      {
        IFS= read -r version || true
        IFS= read -r missing || true
        IFS= read -r command || true
      } <<<"${probe}"
    fi
  fi

  case "${command}" in
    -h | --help) usage ;;
    *) ;;
  esac

  echo "${RULE}"
  local now
  # bash's own clock saves a date process; bash 3 (macOS) has none and falls back to date.
  # The machine's time, so its zone is named: the program's lines below use XTS_DISPLAY_TZ.
  printf -v now '%(%Y-%m-%d %H:%M:%S %Z)T' -1 2>/dev/null || now="$(date '+%Y-%m-%d %H:%M:%S %Z')"
  echo "XTS Token Refresh - ${now}"
  echo "Working Directory: ${dir}"
  echo "${RULE}"

  warn_about_xts_venv "${venv}"
  if [[ -n "${venv}" ]]; then
    echo "✓ Virtual environment activated (${VIRTUAL_ENV})"
  elif [[ -n "${python}" ]]; then
    echo "⚠ No virtualenv found (XTS_VENV, .venv or venv): using ${python}."
    echo "  Run ./refresh_xts_token.sh --setup to create one."
  else
    echo "✗ No virtualenv and no python3 on PATH (${PATH})."
    echo "✗ Token refresh failed (exit code: ${EXIT_CONFIG}): run ./refresh_xts_token.sh --setup"
    return "${EXIT_CONFIG}"
  fi

  if [[ "${probe_code}" -ne 0 ]]; then
    echo "✗ ${python} does not run: ${probe}"
    echo "✗ Token refresh failed (exit code: ${EXIT_CONFIG}): run ./refresh_xts_token.sh --setup"
    return "${EXIT_CONFIG}"
  fi
  echo "Python version: Python ${version}"
  if [[ -n "${missing}" ]]; then
    echo "✗ Required packages missing: ${missing}"
    echo "✗ Token refresh failed (exit code: ${EXIT_CONFIG}): run ./refresh_xts_token.sh --setup"
    return "${EXIT_CONFIG}"
  fi
  echo "✓ Required packages found"
  echo
  echo "Running XTS token refresh script..."
  echo "${THIN_RULE}"
  local code=0 started
  # When the run started (Unix time): only the run records written since are this run's.
  printf -v started '%(%s)T' -1 2>/dev/null || started="$(date +%s)"
  "${python}" "${PROGRAM}" "$@" >&3 || code=$?
  echo "${THIN_RULE}"
  local title meaning
  title="Token refresh"
  [[ "${command}" == "refresh" ]] || title="${PROGRAM} ${command}"
  if [[ "${code}" -eq 0 ]]; then
    echo "✓ ${title} completed successfully (exit code: 0)"
  else
    # Only a failure pays for asking the program what its exit code means.
    # It names the broker and the settings file of each account concerned: it is given the
    # program's arguments (--env-file, --account) to find them as the program did.
    meaning="$("${python}" -m xts_refresher.wrapper "${code}" "${command}" "${started}" -- "$@" \
      2>/dev/null)" ||
      meaning="see the messages above"
    echo "✗ ${title} failed (exit code: ${code}): ${meaning}"
  fi
  echo "${RULE}"
  return "${code}"
}

main "$@"
