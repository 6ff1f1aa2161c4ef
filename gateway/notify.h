/*
 * notify — systemd's service notification protocol (sd_notify(3), sd_watchdog_enabled(3)):
 * READY, RELOADING, STOPPING, STATUS and the watchdog. Every call is a no-op when qgate was
 * not started with NOTIFY_SOCKET (not under systemd, or Type= is not notify), so callers do
 * not check. Owner: the main thread (state set by gw_notify_init, read-only afterwards);
 * sd_notify itself opens its own socket per call, so any thread may send.
 */
#ifndef GW_GATEWAY_NOTIFY_H
#define GW_GATEWAY_NOTIFY_H

#include <stdbool.h>
#include <stdint.h>

/* Read NOTIFY_SOCKET and WATCHDOG_USEC/WATCHDOG_PID once, before any thread starts. */
void gw_notify_init(void);
/* True when a notification socket was given. */
bool gw_notify_is_enabled(void);
/* The watchdog interval systemd wants (WatchdogSec=), in microseconds; 0: no watchdog. */
uint64_t gw_notify_watchdog_usec(void);

/* READY=1 with a STATUS= line (status may be NULL): after start-up and after each reload. */
void gw_notify_ready(const char *status);
/* RELOADING=1 with MONOTONIC_USEC= (systemd 253+ matches it to the reload it started). */
void gw_notify_reloading(void);
/* STOPPING=1: shutdown has begun. */
void gw_notify_stopping(void);
/* STATUS=status: one line shown by systemctl status. */
void gw_notify_status(const char *status);
/* WATCHDOG=1: the caller has checked that the gateway is making progress. */
void gw_notify_watchdog(void);

#endif /* GW_GATEWAY_NOTIFY_H */
