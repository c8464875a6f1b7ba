/**
 * Bytes an async generator makes, as a web ReadableStream read on demand: each pull takes the
 * generator's next chunk (highWaterMark 0, so nothing is read ahead of the reader: a slow HTTP
 * client holds the producer to one chunk). A chunk that fails is told to `onError` and errors the
 * stream (an HTTP answer then ends short); a reader that leaves closes the generator (its
 * `finally` runs).
 */
export function pullStream(chunks: AsyncGenerator<Uint8Array, void, undefined>, onError: (err: unknown) => void): ReadableStream<Uint8Array> {
  return new ReadableStream<Uint8Array>(
    {
      async pull(controller) {
        try {
          const { value, done } = await chunks.next();
          if (done) controller.close();
          else controller.enqueue(value);
        } catch (err) {
          onError(err);
          controller.error(err);
        }
      },
      async cancel() {
        await chunks.return(undefined);
      },
    },
    { highWaterMark: 0 },
  );
}
