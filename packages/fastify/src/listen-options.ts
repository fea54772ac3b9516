/**
 * `fastify.listen({ fdName })`: Fastify hands its listen options to `server.listen()`
 * unchanged, where grace-restart reads `fdName` to claim the systemd socket of that
 * `FileDescriptorName=`. This only lets TypeScript accept the key.
 */
declare module 'fastify' {
  interface FastifyListenOptions {
    /**
     * Listen on the socket systemd passed under this name (`FileDescriptorName=` in the
     * `.socket` unit) whatever address it is bound to. Without it, an inherited socket is
     * matched by its address.
     */
    fdName?: string;
  }
}

export {};
