"""gRPC server reflection, both versions: `grpc.reflection.v1alpha` and `grpc.reflection.v1`.

grpcio-reflection ships only v1alpha (grpc/grpc#38576), while clients built on newer gRPC
libraries ask v1 first and some ask nothing else. The v1 service carries exactly the v1alpha
messages under another package, so both are served by one servicer: the v1 method reads and
writes the v1alpha classes (the bytes are the same), and the v1 file descriptor, derived here
from the v1alpha one with the package renamed, is in the pool so that reflection can describe
itself under either name.
"""

from __future__ import annotations

from collections.abc import Iterable

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection, reflection_pb2

V1ALPHA_SERVICE = reflection.SERVICE_NAME  # grpc.reflection.v1alpha.ServerReflection
V1_PACKAGE = "grpc.reflection.v1"
V1_FILE = "grpc/reflection/v1/reflection.proto"
V1_SERVICE = f"{V1_PACKAGE}.ServerReflection"
METHOD = "ServerReflectionInfo"


def enable(server: grpc.aio.Server, services: Iterable[str]) -> None:
    """Serves reflection v1alpha and v1 on `server`, listing `services` and the two reflection services."""
    _add_v1_descriptor(descriptor_pool.Default())
    servicer = reflection.aio.ReflectionServicer((*services, V1ALPHA_SERVICE, V1_SERVICE))
    handler = grpc.stream_stream_rpc_method_handler(
        servicer.ServerReflectionInfo,
        request_deserializer=reflection_pb2.ServerReflectionRequest.FromString,
        response_serializer=reflection_pb2.ServerReflectionResponse.SerializeToString,
    )
    server.add_generic_rpc_handlers(
        tuple(grpc.method_handlers_generic_handler(name, {METHOD: handler}) for name in (V1ALPHA_SERVICE, V1_SERVICE))
    )


def _add_v1_descriptor(pool: descriptor_pool.DescriptorPool) -> None:
    try:
        pool.FindFileByName(V1_FILE)
        return  # added already (a second server in this process)
    except KeyError:
        pass
    v1 = descriptor_pb2.FileDescriptorProto()
    reflection_pb2.DESCRIPTOR.CopyToProto(v1)
    v1alpha_prefix = f".{reflection_pb2.DESCRIPTOR.package}."
    v1.name = V1_FILE
    v1.package = V1_PACKAGE
    v1.ClearField("options")  # the v1alpha file's options (deprecated, its Java and Go packages) are not v1's
    for message in v1.message_type:
        for field in message.field:
            if field.HasField("type_name"):
                field.type_name = field.type_name.replace(v1alpha_prefix, f".{V1_PACKAGE}.", 1)
    for service in v1.service:
        for method in service.method:
            method.input_type = method.input_type.replace(v1alpha_prefix, f".{V1_PACKAGE}.", 1)
            method.output_type = method.output_type.replace(v1alpha_prefix, f".{V1_PACKAGE}.", 1)
    pool.AddSerializedFile(v1.SerializeToString())
