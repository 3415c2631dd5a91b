"""fecluster's own MySQL client/server protocol codec (server side).

Pure encoders/decoders, byte-level tested, one concept per module:

- ``packets``:   framing (3-byte length + sequence id, 16 MB continuations),
                 length-encoded fields, the bounds-checked ``Cursor``,
                 ``MalformedPacket`` / ``PacketTooLarge`` (1153), ``PacketWriter``.
- ``handshake``: capability flags, HandshakeV10, HandshakeResponse41, SSLRequest.
- ``auth``:      mysql_native_password verification, auth switch.
- ``commands``:  command bytes, COM_QUERY / INIT_DB / FIELD_LIST / SET_OPTION /
                 CHANGE_USER parsers, charset-aware round-trip decoding.
- ``results``:   column types and flags, ``Column``, type inference, OK / ERR /
                 EOF, ColumnDefinition41, text and binary rows, result sets.
- ``sqltext``:   ``?`` placeholders and ``;`` outside quotes and comments,
                 MySQL literals for parameter substitution.
- ``prepared``:  per-connection statement registry, COM_STMT_* packets and the
                 binary parameter decoding.

I/O on top of the codec (draft, not wired into ``frontend.node`` yet):

- ``transport``: an ``asyncio.Protocol`` handing out whole payloads.
- ``server``:    ``MysqlServer`` / ``MysqlConnection`` speaking to the node only
                 through the ``SessionFactory`` / ``WireSession`` protocols.
"""
