"""Which SASL mechanisms a listener offers, each with a factory of server-side exchanges.

``sasl.enabled.mechanisms`` (per listener: ``listener.name.<l>.sasl.enabled.mechanisms``)
names them. PLAIN and OAUTHBEARER are built here from the listener's per-mechanism JAAS
config (``listener.name.<l>.<mechanism>.sasl.jaas.config``); SCRAM comes from the caller
(``extra``). Anything that cannot work is a :class:`ConfigError` at start-up, not a
client's failed login later.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

from kbroker.clock import SYSTEM_CLOCK, Clock
from kbroker.config import BrokerConfig
from kbroker.config.errors import ConfigError
from kbroker.security.jaas import JaasEntry, single_entry
from kbroker.security.sasl import oauthbearer, plain
from kbroker.security.sasl.authenticator import SaslMetrics, SaslSettings
from kbroker.security.sasl.base import SaslServer

SaslServerFactory = Callable[[], SaslServer]
#: Mechanisms Kafka knows that this broker cannot offer, and why.
_UNAVAILABLE = {"GSSAPI": "GSSAPI (Kerberos) is not supported; enable PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER"}


def jaas_key(listener: str, mechanism: str) -> str:
    """The config key of a listener's JAAS config for one mechanism."""
    return f"listener.name.{listener.lower()}.{mechanism.lower()}.sasl.jaas.config"


def _jaas_entry(config: BrokerConfig, listener: str, mechanism: str, login_module: str) -> JaasEntry:
    key = jaas_key(listener, mechanism)
    text = config.listener_get(listener, "sasl.jaas.config", mechanism)
    if not text:
        raise ConfigError(f"listener {listener} enables SASL mechanism {mechanism} but has no JAAS config: set {key} "
                          f"to '{login_module} required ...;'", key=key)
    entry = single_entry(str(text), key)
    if entry.login_module != login_module:
        raise ConfigError(f"{key}: SASL mechanism {mechanism} needs login module {login_module}", key=key)
    return entry


def enabled_mechanisms(config: BrokerConfig, listener: str) -> list[str]:
    """The listener's ``sasl.enabled.mechanisms``, in order, without repeats."""
    raw = config.listener_get(listener, "sasl.enabled.mechanisms") or []
    if isinstance(raw, str):
        raw = raw.split(",")
    out: list[str] = []
    for m in (str(x).strip() for x in raw):
        if m and m not in out:
            out.append(m)
    return out


def mechanism_factories(config: BrokerConfig, listener: str,
                        extra: Mapping[str, SaslServerFactory] | None = None,
                        clock: Clock = SYSTEM_CLOCK) -> dict[str, SaslServerFactory]:
    """A factory of server exchanges per mechanism the listener enables, in the configured
    order; :class:`ConfigError` when a mechanism is unknown, unsupported or lacks its config."""
    extra = extra or {}
    mechanisms = enabled_mechanisms(config, listener)
    key = f"listener.name.{listener.lower()}.sasl.enabled.mechanisms"
    if not mechanisms:
        raise ConfigError(f"listener {listener} uses SASL but no SASL mechanism is enabled: set "
                          f"sasl.enabled.mechanisms or {key}", key="sasl.enabled.mechanisms")
    handler = config.listener_get(listener, "sasl.server.callback.handler.class")
    if handler:
        raise ConfigError(f"sasl.server.callback.handler.class is set for listener {listener}: custom (Java) callback "
                          "handlers cannot be loaded", key="sasl.server.callback.handler.class")
    out: dict[str, SaslServerFactory] = {}
    for mechanism in mechanisms:
        if mechanism in extra:
            out[mechanism] = extra[mechanism]
        elif mechanism == plain.MECHANISM:
            entry = _jaas_entry(config, listener, mechanism, plain.LOGIN_MODULE)
            users = plain.users_from_options(entry.options)
            if not users:
                k = jaas_key(listener, mechanism)
                raise ConfigError(f"{k}: no users for SASL/PLAIN on listener {listener} (add user_<name>=\"<password>\" "
                                  "options)", key=k)
            out[mechanism] = lambda users=users: plain.PlainSaslServer(users)  # type: ignore[misc]
        elif mechanism == oauthbearer.MECHANISM:
            entry = _jaas_entry(config, listener, mechanism, oauthbearer.LOGIN_MODULE)
            options = oauthbearer.ValidatorOptions.from_jaas(entry.options, jaas_key(listener, mechanism))
            out[mechanism] = lambda options=options: oauthbearer.OAuthBearerSaslServer(  # type: ignore[misc]
                options, clock.time_ms)
        elif mechanism in _UNAVAILABLE:
            raise ConfigError(f"listener {listener}: SASL mechanism {_UNAVAILABLE[mechanism]}",
                              key="sasl.enabled.mechanisms")
        elif mechanism.startswith("SCRAM-SHA-"):
            raise ConfigError(f"listener {listener}: SASL mechanism {mechanism} is not available on this broker",
                              key="sasl.enabled.mechanisms")
        else:
            raise ConfigError(f"listener {listener}: unknown SASL mechanism {mechanism!r} (supported: PLAIN, "
                              "SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER)", key="sasl.enabled.mechanisms")
    return out


def sasl_settings(config: BrokerConfig, listener: str, *, extra: Mapping[str, SaslServerFactory] | None = None,
                  clock: Clock = SYSTEM_CLOCK, metrics: SaslMetrics | None = None) -> SaslSettings:
    """Everything the authenticators of a SASL listener share, read from the config."""
    factories = mechanism_factories(config, listener, extra, clock)
    reauth = {m: int(config.listener_get(listener, "connections.max.reauth.ms", m) or 0) for m in factories}
    return SaslSettings(
        listener=listener, factories=factories, max_reauth_ms=reauth,
        failure_delay_ms=int(config.listener_get(listener, "connection.failed.authentication.delay.ms")),
        max_receive_size=int(config.listener_get(listener, "sasl.server.max.receive.size")),
        clock=clock, metrics=metrics)
