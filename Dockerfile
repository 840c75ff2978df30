# preempttrace as a container image, for a sidecar that shares its pod's PID namespace
# (Kubernetes: shareProcessNamespace: true) and traces the application beside it:
#
#   docker build -t preempttrace .
#   preempttrace -p PID            (in the sidecar; PID as the shared namespace numbers it)
#
# The binary is static and reads only /proc and /sys, which the container runtime mounts,
# so the image holds nothing else. Grant CAP_SYS_PTRACE for the ptrace backend and, for
# eBPF, CAP_SYS_ADMIN too (current kernels create uprobes only with it); without it the
# default backend falls back to ptrace and says so.
#
# The eBPF objects are committed, so the build needs no clang.

FROM golang:1.26 AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/preempttrace ./cmd/preempttrace

FROM scratch
COPY --from=build /out/preempttrace /preempttrace
ENTRYPOINT ["/preempttrace"]
