"""The process around the service: health follows the topic, reflection, and failing to start clearly."""

from __future__ import annotations

import subprocess
import sys
import uuid

import grpc
import pytest
from gateway_testing import PROJECT, PubSub, ServiceToken, gateway_env
from google.protobuf import descriptor_pb2
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from localdev.gateway import DevelopmentLicense, start_gateway
from localdev.processes import ServiceStartError


def test_health_is_serving_only_while_the_topic_exists(
    pubsub: PubSub, dev_license: DevelopmentLicense, service_token: ServiceToken
) -> None:
    topic_id = f"appears-later-{uuid.uuid4().hex[:8]}"
    env = gateway_env(dev_license, service_token, TELEMETRY_PUBSUB_TOPIC=topic_id)

    with start_gateway(env, require_serving=False) as gateway:
        assert gateway.health() == "NOT_SERVING"
        assert gateway.health("telemetrygateway.v1.TelemeteryGatewayService") == "NOT_SERVING"
        assert gateway.health("liveness") == "SERVING"  # alive, just not able to publish
        pubsub.create(topic_id)
        assert gateway.wait_for_health("SERVING", timeout=10) == "SERVING"
        assert gateway.health("telemetrygateway.v1.TelemeteryGatewayService") == "SERVING"
        pubsub.publisher.delete_topic(topic=pubsub.publisher.topic_path(PROJECT, topic_id))
        assert gateway.wait_for_health("NOT_SERVING", timeout=10) == "NOT_SERVING"
        assert gateway.health("liveness") == "SERVING"
        reasons = [r.get("reason", "") for r in gateway.log_records() if r.get("message") == "not serving"]

    assert any("does not exist" in reason for reason in reasons)


def test_reflection_lists_the_services(gateway) -> None:
    with grpc.insecure_channel(gateway.address) as channel:
        stub = reflection_pb2_grpc.ServerReflectionStub(channel)
        responses = stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(list_services="")]))
        services = {service.name for response in responses for service in response.list_services_response.service}

    assert {"telemetrygateway.v1.TelemeteryGatewayService", "grpc.health.v1.Health"} <= services


def reflect_v1(address: str, *requests: reflection_pb2.ServerReflectionRequest) -> list:
    """Asks reflection as a client that knows only `grpc.reflection.v1`: the v1 method path, whose messages
    are byte for byte the v1alpha ones (the v1 proto changed the package, not the messages)."""
    with grpc.insecure_channel(address) as channel:
        call = channel.stream_stream(
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            request_serializer=reflection_pb2.ServerReflectionRequest.SerializeToString,
            response_deserializer=reflection_pb2.ServerReflectionResponse.FromString,
        )
        return list(call(iter(requests), timeout=10))


def files_of(response: reflection_pb2.ServerReflectionResponse) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    files = [
        descriptor_pb2.FileDescriptorProto.FromString(raw)
        for raw in response.file_descriptor_response.file_descriptor_proto
    ]
    return {file.name: file for file in files}


def test_reflection_v1_answers_a_client_that_speaks_only_v1(gateway) -> None:
    listed, gateway_file, reflection_file = reflect_v1(
        gateway.address,
        reflection_pb2.ServerReflectionRequest(list_services=""),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="telemetrygateway.v1.TelemeteryGatewayService"),
        reflection_pb2.ServerReflectionRequest(file_containing_symbol="grpc.reflection.v1.ServerReflection"),
    )

    services = {service.name for service in listed.list_services_response.service}
    assert {
        "telemetrygateway.v1.TelemeteryGatewayService",
        "grpc.health.v1.Health",
        "grpc.reflection.v1.ServerReflection",
        "grpc.reflection.v1alpha.ServerReflection",
    } <= services
    (service,) = files_of(gateway_file)["telemetrygateway/v1/telemetrygateway.proto"].service
    assert {method.name for method in service.method} == {"RecordEvents", "RecordEvent"}
    v1 = files_of(reflection_file)["grpc/reflection/v1/reflection.proto"]
    assert v1.package == "grpc.reflection.v1"
    (method,) = v1.service[0].method
    assert (method.name, method.input_type, method.output_type) == (
        "ServerReflectionInfo",
        ".grpc.reflection.v1.ServerReflectionRequest",
        ".grpc.reflection.v1.ServerReflectionResponse",
    )
    assert all("v1alpha" not in field.type_name for message in v1.message_type for field in message.field)


def test_an_invalid_setting_stops_the_start_with_the_variable_named() -> None:
    completed = subprocess.run(
        [sys.executable, "-m", "gateway_run"],
        env={"TELEMETRY_GATEWAY_DEV_MODE": "true", "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY": "lots"},
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert completed.returncode == 2
    assert "TELEMETRY_GATEWAY_PUBLISH_CONCURRENCY" in completed.stderr
    assert '"severity": "ERROR"' in completed.stderr


def test_a_port_in_use_stops_the_start(gateway, dev_license: DevelopmentLicense, service_token: ServiceToken) -> None:
    env = gateway_env(dev_license, service_token, TELEMETRY_GATEWAY_DEV_MODE="true", TELEMETRY_GATEWAY_WORKERS="0")

    with pytest.raises(ServiceStartError, match="exited with status 1"):
        start_gateway(env, port=gateway.process.port, timeout=20)
