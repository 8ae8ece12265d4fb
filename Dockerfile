# The controller image: built with the workspace's toolchain, run distroless as non-root.
# (Not built on the development machine, which has no container runtime; see README.)
# Nothing but Rust is needed to build (the etcd gRPC client is generated and committed).
FROM rust:1.95-bookworm AS build
WORKDIR /src
COPY . .
RUN cargo build --release --locked -p backup-controller -p backup-cli \
 && cp target/release/backup-controller target/release/backupctl /usr/local/bin/

FROM gcr.io/distroless/cc-debian12:nonroot
COPY --from=build /usr/local/bin/backup-controller /usr/local/bin/backupctl /usr/local/bin/
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/backup-controller"]
CMD ["run"]
