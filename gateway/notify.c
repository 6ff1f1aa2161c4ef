/*
 * notify.c — thin wrappers over libsystemd's sd_notify. A failed send is ignored: systemd
 * going away must never stop the gateway, and a missed WATCHDOG=1 is what the watchdog is
 * for. Values sent are built here only from numbers and our own text (no peer input).
 */
#include "gateway/notify.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <systemd/sd-daemon.h>

static bool is_enabled;
static uint64_t watchdog_usec;

void gw_notify_init(void)
{
	const char *sock = getenv("NOTIFY_SOCKET");
	uint64_t usec = 0;

	is_enabled = sock && *sock;
	/* > 0 only when WATCHDOG_USEC is set and WATCHDOG_PID is unset or ours; the variables
	 * stay set (0): qgate starts no children that could mistake them for theirs */
	if (is_enabled && sd_watchdog_enabled(0, &usec) > 0)
		watchdog_usec = usec;
}

bool gw_notify_is_enabled(void)
{
	return is_enabled;
}

uint64_t gw_notify_watchdog_usec(void)
{
	return watchdog_usec;
}

void gw_notify_ready(const char *status)
{
	if (!is_enabled)
		return;
	if (status)
		(void)sd_notifyf(0, "READY=1\nSTATUS=%s", status);
	else
		(void)sd_notify(0, "READY=1");
}

void gw_notify_reloading(void)
{
	struct timespec ts;

	if (!is_enabled)
		return;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	(void)sd_notifyf(0, "RELOADING=1\nSTATUS=reloading the configuration\nMONOTONIC_USEC=%llu",
			 (unsigned long long)ts.tv_sec * 1000000ull +
				 (unsigned long long)ts.tv_nsec / 1000ull);
}

void gw_notify_stopping(void)
{
	if (is_enabled)
		(void)sd_notify(0, "STOPPING=1\nSTATUS=stopping: finishing requests in flight");
}

void gw_notify_status(const char *status)
{
	if (is_enabled)
		(void)sd_notifyf(0, "STATUS=%s", status);
}

void gw_notify_watchdog(void)
{
	if (is_enabled && watchdog_usec)
		(void)sd_notify(0, "WATCHDOG=1");
}
