/**
 * HTTP headers of the collect API (`POST {endpoint}/{env}/v1/things/{id}/collect`).
 *
 * `X-Flashlex-Message-Id` carries the outbox message id (a UUID): the hub stores a message once
 * per id, so a thing may send the same message again (a lost answer, a retry after a restart)
 * without it being stored twice. HTTP header names are case-insensitive (RFC 9110 §5.1).
 */
export const MESSAGE_ID_HEADER = "X-Flashlex-Message-Id";
