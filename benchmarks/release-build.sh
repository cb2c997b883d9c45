# Sourced by the benchmark scripts. release_binary PRODUCT builds PRODUCT in release mode (progress on stderr;
# LOGBROKER_SCRATCH_PATH, if set, is passed to swift as --scratch-path) and prints the path of its binary.
release_binary() {
    local options=(-c release)
    if [ -n "${LOGBROKER_SCRATCH_PATH:-}" ]; then
        options+=(--scratch-path "$LOGBROKER_SCRATCH_PATH")
    fi
    swift build "${options[@]}" --product "$1" >&2
    echo "$(swift build "${options[@]}" --show-bin-path)/$1"
}
