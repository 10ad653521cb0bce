"""Connection settings shared by the sync and async clients."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Union

import grpc

PathLike = Union[str, Path]

#: Bigger than the server's default message limit (4 MiB), for large recall answers.
_MAX_RECEIVE = 64 << 20


@dataclass(frozen=True)
class Connection:
    """Where and how to connect: the target, credentials and the API key header."""

    target: str
    credentials: Optional[grpc.ChannelCredentials]
    metadata: tuple[tuple[str, str], ...]
    options: tuple[tuple[str, object], ...]

    @classmethod
    def make(
        cls,
        address: str,
        *,
        api_key: Optional[str],
        tls_ca: Optional[PathLike],
        tls_cert: Optional[PathLike],
        tls_key: Optional[PathLike],
        tls_domain: Optional[str],
    ) -> Connection:
        tls = address.startswith("https://") or tls_ca is not None or tls_cert is not None
        target = address.removeprefix("https://").removeprefix("http://").rstrip("/")
        if not target:
            raise ValueError("an empty server address")
        key = api_key if api_key is not None else os.environ.get("MNEMO_API_KEY")
        metadata = (("authorization", f"Bearer {key}"),) if key else ()
        options: list[tuple[str, object]] = [("grpc.max_receive_message_length", _MAX_RECEIVE)]
        credentials = None
        if tls:
            if (tls_cert is None) != (tls_key is None):
                raise ValueError("a client certificate needs its key (tls_cert and tls_key)")
            credentials = grpc.ssl_channel_credentials(
                root_certificates=Path(tls_ca).read_bytes() if tls_ca else None,
                private_key=Path(tls_key).read_bytes() if tls_key else None,
                certificate_chain=Path(tls_cert).read_bytes() if tls_cert else None,
            )
            if tls_domain:
                options.append(("grpc.ssl_target_name_override", tls_domain))
        return cls(target, credentials, metadata, tuple(options))

    def to(self, address: str) -> Connection:
        """The same settings for another node (``http://host:port`` or ``host:port``)."""
        target = address.removeprefix("https://").removeprefix("http://").rstrip("/")
        return dataclasses.replace(self, target=target)

    def channel(self) -> grpc.Channel:
        if self.credentials is None:
            return grpc.insecure_channel(self.target, options=list(self.options))
        return grpc.secure_channel(self.target, self.credentials, options=list(self.options))

    def aio_channel(self) -> grpc.aio.Channel:
        if self.credentials is None:
            return grpc.aio.insecure_channel(self.target, options=list(self.options))
        return grpc.aio.secure_channel(self.target, self.credentials, options=list(self.options))
