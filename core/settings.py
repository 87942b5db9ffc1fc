"""Typed settings: ``HUILIU_*`` environment variables over an optional TOML file over defaults.

Every value is validated once at start; a bad value stops the process with a message that names the key
(``HUILIU_WEB_PORT: …``) instead of failing later somewhere else.
"""

from __future__ import annotations

import os
import secrets
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError

ENV_PREFIX = "HUILIU_"


class SettingsError(Exception):
    """A setting is missing, unknown or invalid; the message names the key."""


class Settings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # Unset URLs mean "start the embedded server" under `huiliu run` and in tests.
    mongo_url: str | None = None
    redis_url: str | None = None
    db_name: str = Field(default="huiliu", pattern=r"^[A-Za-z0-9_-]{1,63}$")
    mongo_timeout_ms: int = Field(default=2000, ge=100, le=60_000)

    data_dir: Path = Path("var")
    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=1, le=65535)
    public_url: str | None = None

    embedded_mongo_port: int = Field(default=27027, ge=1, le=65535)
    embedded_redis_port: int = Field(default=6389, ge=1, le=65535)

    secret_key: SecretStr | None = None
    token_ttl_seconds: int = Field(default=12 * 3600, ge=60)
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024, le=512 * 1024 * 1024)
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_seconds: int = Field(default=300, ge=1)
    metrics_token: SecretStr | None = None

    default_region: str = Field(default="CN", pattern=r"^[A-Z]{2}$")
    timezone: str = "Asia/Shanghai"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["console", "json"] = "console"
    demo: bool = True
    worker_concurrency: int = Field(default=2, ge=1, le=64)
    outbox_relay_seconds: float = Field(default=10.0, gt=0)

    # Speech recognition (asr/): where `huiliu asr fetch` installs vosk models; which engine serves streams.
    asr_model_dir: Path = Path("var/asr-models")
    asr_engine: Literal["auto", "vosk", "whisper"] = "auto"
    asr_workers: int = Field(default=2, ge=1, le=32)
    asr_whisper_model: Path | None = None
    # Earlier contacts within this many hours make a message a "repeated contact" (asr.nlu priority).
    nlu_repeat_contact_hours: float = Field(default=72.0, gt=0, le=24 * 90)

    # Telephony (telephony/): the Kamailio SIP front on telephony_sip_port and a pool of pjsua2 worker
    # processes on telephony_worker_base_port + i, each carrying as many calls as its pjsua2 allows
    # (measured at start). Recordings default to <data_dir>/recordings.
    telephony_enabled: bool = True
    telephony_sip_host: str = "127.0.0.1"
    telephony_sip_port: int = Field(default=5060, ge=1, le=65535)
    # Kamailio's SIP worker processes per transport (UDP and TCP); each handles thousands of requests a second
    telephony_sip_children: int = Field(default=2, ge=1, le=64)
    telephony_worker_base_port: int = Field(default=5070, ge=1, le=65535)
    telephony_pool_size: int = Field(default=1, ge=1, le=500)
    # An elastic pool: whenever fewer call slots than this are free, another worker starts (up to
    # telephony_pool_max_size workers; unset: twice the pool size); a worker beyond the pool size stops again
    # once it has had no call for telephony_pool_idle_seconds while the others keep enough free. 0: the pool
    # keeps its size. Worker i listens on telephony_worker_base_port + i, for every i up to the maximum.
    telephony_pool_spare_calls: int = Field(default=2, ge=0, le=100_000)
    telephony_pool_idle_seconds: float = Field(default=60.0, gt=0)
    telephony_pool_max_size: int | None = Field(default=None, ge=1, le=1000)
    telephony_max_calls_per_worker: int = Field(default=256, ge=1, le=4096)
    telephony_rtp_port_min: int = Field(default=20000, ge=1024, le=65535)
    telephony_rtp_port_max: int = Field(default=29999, ge=1024, le=65535)
    telephony_recordings_dir: Path | None = None
    telephony_recording_retention_days: int = Field(default=90, ge=0, description="0 keeps them forever")
    telephony_demo_number: str = Field(default="1000", pattern=r"^\+?[A-Za-z0-9_.-]{1,32}$")
    telephony_router: str = Field(default="ivr_flows.line:router", pattern=r"^[\w.]+(:\w+)?$")
    # how often each worker writes its heartbeat (at most 1/2.5 of the node timeout, so two can be late)
    telephony_heartbeat_seconds: float = Field(default=2.0, gt=0, le=60)
    telephony_node_timeout_seconds: float = Field(default=5.0, gt=0, le=600)
    telephony_drain_seconds: float = Field(default=30.0, ge=0)
    telephony_registrar: str | None = None
    # The SIP front's defences: requests per 2 s from one source address before Kamailio drops it (the
    # workers and this host are exempt), and digest authentication of SIP phones that REGISTER (the
    # password of user U is the first 24 hex digits of sha256("<secret_key>:sip:<U>"); off: only this
    # host may register).
    telephony_flood_requests: int = Field(default=200, ge=10, le=100_000)
    telephony_phone_auth: bool = False
    telephony_sip_username: str | None = None
    telephony_sip_password: SecretStr | None = None

    # Web softphone (agent_desktop/softphone.py): the addresses the web process offers browsers for WebRTC
    # media, comma-separated; empty = every non-loopback interface (aioice's discovery).
    webrtc_host_addresses: str = Field(default="", pattern=r"^[0-9a-fA-F.:, ]*$")

    # IVR (ivr_flows/) on the telephony workers: which flow answers which dialed number ("number=flow",
    # comma-separated; "*" is every other number), how often a worker re-reads the active versions in
    # case a bus message was lost, and what the live transcript covers: "listen" nodes only, the whole
    # call in ivr_transcript_language, or nothing.
    ivr_lines: str = Field(
        default="*=main", pattern=r"^\s*[^=,\s]+=[a-z][a-z0-9_-]*(\s*,\s*[^=,\s]+=[a-z][a-z0-9_-]*)*\s*$"
    )
    ivr_flow_poll_seconds: float = Field(default=30.0, gt=0, le=3600)
    ivr_transcribe: Literal["listen", "call", "off"] = "listen"
    # After a listen node's timeout, how long recognition may still take: utterance engines (whisper)
    # decode only once the caller stopped speaking, which takes seconds on a busy CPU.
    ivr_listen_decode_seconds: float = Field(default=15.0, gt=0, le=120)
    ivr_transcript_language: str = Field(default="zh", pattern=r"^[a-z]{2}$")

    # SMS (omnichannel/channels/): the local sink for development or an HTTP gateway. Webhooks from the
    # gateway are signed with HMAC-SHA256 over "<timestamp>.<raw body>" using sms_webhook_secret.
    sms_provider: Literal["sink", "http"] = "sink"
    sms_http_base_url: str | None = None
    sms_http_api_key: SecretStr | None = None
    sms_sender: str = Field(default="Huiliu", max_length=32)
    sms_webhook_secret: SecretStr | None = None
    sms_delivery: Literal["celery", "inline"] = "celery"
    sms_max_attempts: int = Field(default=5, ge=1, le=50)
    sms_retry_backoff_seconds: float = Field(default=5.0, gt=0, le=3600)
    sms_rate_per_minute: int = Field(default=6, ge=1, description="Per recipient number")
    sms_max_chars: int = Field(default=1000, ge=70, le=10_000)

    # WeChat Official Account: token (plaintext mode) plus encoding_aes_key (safe mode); "sink" records
    # customer-service and template messages in MongoDB instead of calling api.weixin.qq.com.
    wechat_token: SecretStr | None = None
    wechat_app_id: str | None = None
    wechat_app_secret: SecretStr | None = None
    wechat_encoding_aes_key: SecretStr | None = None
    wechat_client: Literal["sink", "api"] = "sink"
    # voice messages WeChat did not recognise are transcribed by our ASR in this language
    wechat_voice_language: Literal["zh", "en"] = "zh"
    wechat_template_id: str | None = None
    wechat_reply_timeout_seconds: float = Field(default=3.5, gt=0, lt=5)
    wechat_max_body_bytes: int = Field(default=64 * 1024, ge=1024, le=1024 * 1024)
    webhook_tolerance_seconds: int = Field(default=300, ge=1, le=86_400)

    # Web chat (omnichannel/channels/webchat.py): a second Socket.IO server on webchat_path for the widget on
    # other sites; webchat_allowed_origins is a comma-separated list of page origins ("*" = any).
    webchat_allowed_origins: str = "*"
    webchat_max_chars: int = Field(default=2000, ge=1, le=20_000)
    webchat_max_attachment_bytes: int = Field(default=5 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    webchat_visitor_ttl_days: int = Field(default=365, ge=1, le=3650)
    webchat_visitors_per_minute: int = Field(default=30, ge=1, description="New visitor tokens per address")

    # The self-service bot (omnichannel/channels/bot.py) in front of agents on web chat, WeChat and SMS.
    bot_enabled: bool = True
    bot_kb_threshold: float = Field(default=0.5, gt=0, le=1, description="KB answer confidence needed")
    bot_handoff_queue: str = Field(default="chat", pattern=r"^[a-z][a-z0-9_-]{0,63}$")
    bot_idle_resolve_seconds: float = Field(default=900.0, gt=0)

    # CRM/ERP connector (omnichannel/crm.py): order status, stock, payment state.
    crm_provider: Literal["demo", "http"] = "demo"
    crm_http_base_url: str | None = None
    crm_http_api_key: SecretStr | None = None
    crm_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Email (omnichannel/channels/email.py): `huiliu email` listens for SMTP; outbound goes to smtp_host.
    email_enabled: bool = False
    email_listen_host: str = "127.0.0.1"
    email_listen_port: int = Field(default=2525, ge=1, le=65535)
    email_address: str = "service@huiliu.local"
    email_max_bytes: int = Field(default=10 * 1024 * 1024, ge=1024, le=100 * 1024 * 1024)
    smtp_host: str | None = None
    smtp_port: int = Field(default=25, ge=1, le=65535)
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_starttls: bool = False
    # IMAP polling (omnichannel/channels/imap.py): `huiliu email` polls this mailbox when imap_host is set.
    imap_host: str | None = None
    imap_port: int = Field(default=993, ge=1, le=65535)
    imap_username: str | None = None
    imap_password: SecretStr | None = None
    imap_folder: str = Field(default="INBOX", min_length=1, max_length=255)
    imap_interval_seconds: float = Field(default=30.0, ge=1, le=3600)
    imap_tls: Literal["implicit", "starttls", "none"] = "implicit"

    def secret(self) -> str:
        """The signing secret; under the embedded defaults it is generated once into ``data_dir``."""
        if self.secret_key is not None:
            return self.secret_key.get_secret_value()
        path = self.data_dir / "secret_key"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as handle:
                handle.write(secrets.token_urlsafe(48))
        return path.read_text().strip()


def _env_values(environ: Mapping[str, str]) -> dict[str, str]:
    known = set(Settings.model_fields)
    values: dict[str, str] = {}
    for name, value in environ.items():
        if not name.startswith(ENV_PREFIX) or name == ENV_PREFIX + "CONFIG":
            continue
        key = name[len(ENV_PREFIX) :].lower()
        if key not in known:
            raise SettingsError(f"{name}: unknown setting (known: {', '.join(sorted(known))})")
        values[key] = value
    return values


def _toml_values(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError as exc:
        raise SettingsError(f"HUILIU_CONFIG: file not found: {path}") from exc
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{path}: not valid TOML: {exc}") from exc
    section = data.get("huiliu", data)
    if not isinstance(section, dict):
        raise SettingsError(f"{path}: [huiliu] must be a table")
    return dict(section)


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Build the settings from TOML (``HUILIU_CONFIG``), then ``HUILIU_*`` env, then ``overrides``."""
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    origin: dict[str, str] = {}
    config_path = environ.get(ENV_PREFIX + "CONFIG")
    if config_path:
        toml_values = _toml_values(Path(config_path))
        values.update(toml_values)
        origin.update({key: f"{config_path}: {key}" for key in toml_values})
    env_values = _env_values(environ)
    values.update(env_values)
    origin.update({key: ENV_PREFIX + key.upper() for key in env_values})
    values.update(overrides)
    try:
        return Settings.model_validate(values)
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            key = str(error["loc"][0]) if error["loc"] else "?"
            name = origin.get(key, ENV_PREFIX + key.upper())
            problems.append(f"{name}: {error['msg']}")
        raise SettingsError("; ".join(problems)) from None
