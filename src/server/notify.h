/* The service manager's readiness protocol (sd_notify), spoken without libsystemd.
 *
 * Under systemd with Type=notify, $NOTIFY_SOCKET names an AF_UNIX datagram socket (a
 * path, or an abstract name when it starts with '@'); the server sends it newline-
 * separated VARIABLE=VALUE lines: READY=1 once it serves, STATUS=... while it recovers,
 * RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 when it stops. Without
 * $NOTIFY_SOCKET every call does nothing. */
#ifndef STRATA_SERVER_NOTIFY_H
#define STRATA_SERVER_NOTIFY_H

/* Sends MESSAGE (e.g. "READY=1\nSTATUS=serving") as one datagram to $NOTIFY_SOCKET.
 * Returns 0 when sent or when $NOTIFY_SOCKET is unset, -1 (errno set) when the variable
 * is malformed or the send fails; the server logs nothing for it: a service manager that
 * is gone must not stop the store. Safe from any thread (a socket per call; the
 * environment is only read). */
int notify_service_manager(const char *message);

#endif
