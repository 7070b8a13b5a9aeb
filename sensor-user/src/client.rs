//! Client side of the API, for `sensorctl` and the tests.

use sensor_proto::v1::sensor_client::SensorClient;
use tonic::transport::{Channel, Endpoint, Uri};

use crate::config::ListenAddr;

/// Connects to the sensor at `addr` (`unix:/path` or `host:port`).
pub async fn connect(addr: &str) -> anyhow::Result<SensorClient<Channel>> {
    let channel = match ListenAddr::parse(addr).map_err(anyhow::Error::msg)? {
        ListenAddr::Unix(path) => {
            // The URI is required by the API but unused: the connector dials the socket.
            Endpoint::try_from("http://[::]:50051")?
                .connect_with_connector(tower::service_fn(move |_: Uri| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                }))
                .await?
        }
        ListenAddr::Tcp(sock) => {
            Endpoint::try_from(format!("http://{sock}"))?
                .connect()
                .await?
        }
    };
    Ok(SensorClient::new(channel).max_decoding_message_size(64 * 1024 * 1024))
}
