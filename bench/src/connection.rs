//! One keep-alive HTTP/1.1 connection, driven by hyper with nothing in between.

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::endpoint::Endpoint;
use crate::error::{BenchError, Result};

/// How much of an unexpected reply is kept for the error message.
const ERROR_BODY_PREVIEW: usize = 300;

pub struct Connection {
    sender: SendRequest<Full<Bytes>>,
}

impl Connection {
    pub async fn open(endpoint: &Endpoint) -> Result<Connection> {
        let stream = TcpStream::connect(endpoint.address)
            .await
            .map_err(|source| BenchError::Connect {
                address: endpoint.address.to_string(),
                source,
            })?;
        stream.set_nodelay(true)?;
        let (sender, driver) = http1::handshake(TokioIo::new(stream)).await?;
        // The driver ends when the sender is dropped or the server closes the connection.
        tokio::spawn(async move {
            let _ = driver.await;
        });
        Ok(Connection { sender })
    }

    /// Sends a request and waits for the response head.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Response<Incoming>> {
        self.sender.ready().await?;
        Ok(self.sender.send_request(request).await?)
    }

    pub fn is_open(&self) -> bool {
        !self.sender.is_closed()
    }
}

/// A connection that is (re)opened when needed, e.g. after the server closed it.
pub struct ReusableConnection {
    endpoint: Endpoint,
    current: Option<Connection>,
}

impl ReusableConnection {
    pub fn new(endpoint: Endpoint) -> ReusableConnection {
        ReusableConnection {
            endpoint,
            current: None,
        }
    }

    pub async fn get(&mut self) -> Result<&mut Connection> {
        let reusable = self.current.as_ref().is_some_and(Connection::is_open);
        if !reusable {
            self.current = None;
        }
        match &mut self.current {
            Some(connection) => Ok(connection),
            slot => Ok(slot.insert(Connection::open(&self.endpoint).await?)),
        }
    }

    /// Forgets the connection after a failure, so the next request opens a new one.
    pub fn discard(&mut self) {
        self.current = None;
    }
}

/// The response body when the status is 200, an error carrying the start of the body otherwise.
pub async fn expect_ok(response: Response<Incoming>) -> Result<Incoming> {
    let status = response.status();
    if status == StatusCode::OK {
        return Ok(response.into_body());
    }
    let body = read_to_end(response.into_body()).await.unwrap_or_default();
    let preview = String::from_utf8_lossy(&body[..body.len().min(ERROR_BODY_PREVIEW)]).into_owned();
    Err(BenchError::Status {
        status: status.as_u16(),
        body: preview,
    })
}

pub async fn read_to_end(body: Incoming) -> Result<Bytes> {
    Ok(body.collect().await?.to_bytes())
}
